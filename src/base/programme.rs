//! The supervision programmes a person can be in, and the signals each may collect (purpose
//! binding: decode refuses readings of a signal the person's programme does not allow).

/// A programme: the court order or treatment a person wears a device for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Programme {
    /// A court-imposed alcohol ban, monitored with a transdermal ankle monitor.
    AlcoholBan,
    /// Aggression-regulation training, with a wristband (skin conductance, pulse, motion).
    AggressionTraining,
    /// Forensic care leave (tbs), with either device.
    TbsLeave,
}

impl Programme {
    pub const ALL: [Programme; 3] = [Self::AlcoholBan, Self::AggressionTraining, Self::TbsLeave];

    /// The one string form: in SQL, forms, the CLI and research group values.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AlcoholBan => "alcohol-ban",
            Self::AggressionTraining => "aggression-training",
            Self::TbsLeave => "tbs-leave",
        }
    }

    /// The signals the programme may collect, as stored in `programmes.signals`.
    pub const fn signals(self) -> &'static str {
        match self {
            Self::AlcoholBan => "ankle,battery,event",
            Self::AggressionTraining => "eda,bvp,hr,ibi,temp,acc,tag,battery,event",
            Self::TbsLeave => "ankle,eda,bvp,hr,ibi,temp,acc,tag,battery,event",
        }
    }
}

crate::closed_set_text!(Programme);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrated_programmes_table_holds_exactly_these_programmes_and_signals() {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::base::db::testing::open(tmp.path());
        let conn = db.lock();
        let mut stmt = conn
            .prepare("SELECT name, signals FROM programmes ORDER BY name")
            .unwrap();
        let rows: Vec<(Programme, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut expected: Vec<(Programme, String)> = Programme::ALL
            .map(|p| (p, p.signals().to_string()))
            .to_vec();
        expected.sort_by_key(|(p, _)| p.as_str());
        assert_eq!(rows, expected);
        for p in Programme::ALL {
            assert_eq!(Programme::parse(p.as_str()), Some(p));
        }
    }
}
