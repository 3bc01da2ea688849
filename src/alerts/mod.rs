//! Alerts: their closed vocabularies (kind, severity, workflow status, revision reason), each with
//! one string form used by SQL, forms and the pages' labels; storing them ([`store`]); and reading
//! and working them as an officer ([`casework`]). The officer's filter offers exactly the kinds
//! of [`AlertKind::ALL`].

pub mod casework;
pub mod chart;
pub mod person;
pub mod store;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A drinking episode (ankle monitor).
    Alcohol,
    /// An alcohol episode whose shape or ambient air says exposure, for review.
    Interferent,
    StrapOpen,
    PossibleRemoval,
    Obstruction,
    BatteryLow,
    DeviceFault,
    /// The base station has not been heard from for the configured hours.
    CommunicationLost,
    /// ... and for the critical number of hours.
    CommunicationCritical,
    DeviceDisconnected,
    StationSpoolFull,
    ClockDrift,
}

impl AlertKind {
    pub const ALL: [AlertKind; 12] = [
        Self::Alcohol,
        Self::Interferent,
        Self::StrapOpen,
        Self::PossibleRemoval,
        Self::Obstruction,
        Self::BatteryLow,
        Self::DeviceFault,
        Self::CommunicationLost,
        Self::CommunicationCritical,
        Self::DeviceDisconnected,
        Self::StationSpoolFull,
        Self::ClockDrift,
    ];

    /// The one string form: in SQL, in URLs and forms.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Alcohol => "alcohol",
            Self::Interferent => "interferent",
            Self::StrapOpen => "strap-open",
            Self::PossibleRemoval => "possible-removal",
            Self::Obstruction => "obstruction",
            Self::BatteryLow => "battery-low",
            Self::DeviceFault => "device-fault",
            Self::CommunicationLost => "communication-lost",
            Self::CommunicationCritical => "communication-critical",
            Self::DeviceDisconnected => "device-disconnected",
            Self::StationSpoolFull => "station-spool-full",
            Self::ClockDrift => "clock-drift",
        }
    }
}

/// How urgent an alert is. Stored as [`Severity::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Act now: drinking, tampering, critical silence.
    High,
    /// A provisional alcohol alert, a device fault.
    Medium,
    /// Communication problems that are not yet critical.
    Warning,
    /// An interferent shape: a person must look at it.
    Review,
    /// Battery low.
    Low,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Self::High,
        Self::Medium,
        Self::Warning,
        Self::Review,
        Self::Low,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Warning => "warning",
            Self::Review => "review",
            Self::Low => "low",
        }
    }
}

crate::closed_set_text!(AlertKind);
crate::closed_set_text!(Severity);

/// Where an alert is in the officer's workflow. Stored as [`Status::as_str`], shown translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    New,
    InProcess,
    Confirmed,
    NotConfirmed,
    Resolved,
}

impl Status {
    /// In workflow order.
    pub const ALL: [Status; 5] = [
        Self::New,
        Self::InProcess,
        Self::Confirmed,
        Self::NotConfirmed,
        Self::Resolved,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::InProcess => "in_process",
            Self::Confirmed => "confirmed",
            Self::NotConfirmed => "not_confirmed",
            Self::Resolved => "resolved",
        }
    }

    /// The steps the workflow allows from this status.
    pub const fn next(self) -> &'static [Status] {
        match self {
            Self::New => &[Self::InProcess],
            Self::InProcess => &[Self::Confirmed, Self::NotConfirmed, Self::Resolved],
            Self::Confirmed | Self::NotConfirmed => &[Self::Resolved],
            Self::Resolved => &[],
        }
    }
}

crate::closed_set_text!(Status);

/// Why an alert was revised. Stored as [`RevisionReason::code`], shown translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionReason {
    /// The provisional alert's episode has ended: its shape is known and it is final.
    Confirmed,
    /// New readings changed the classification (drinking ↔ interferent).
    Reclassified,
    /// New readings changed the extent, peak or evidence.
    Changed,
    /// One episode now covers this alert and an earlier one: folded into the earlier.
    Merged,
    /// The readings no longer show an event here.
    Withdrawn,
    /// A withdrawn alert is supported by the readings again.
    Reinstated,
}

impl RevisionReason {
    pub const ALL: [RevisionReason; 6] = [
        Self::Confirmed,
        Self::Reclassified,
        Self::Changed,
        Self::Merged,
        Self::Withdrawn,
        Self::Reinstated,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Reclassified => "reclassified",
            Self::Changed => "changed",
            Self::Merged => "merged",
            Self::Withdrawn => "withdrawn",
            Self::Reinstated => "reinstated",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nachtwacht_pipelines::tamper;

    #[test]
    fn every_kind_a_pipeline_or_the_server_writes_is_in_the_set() {
        for written in [
            tamper::KIND_STRAP_OPEN,
            tamper::KIND_REMOVAL,
            tamper::KIND_OBSTRUCTION,
            tamper::KIND_BATTERY_LOW,
            tamper::KIND_DEVICE_FAULT,
            crate::alerts::AlertKind::CommunicationLost.as_str(),
            crate::alerts::AlertKind::CommunicationCritical.as_str(),
            crate::alerts::AlertKind::DeviceDisconnected.as_str(),
            crate::alerts::AlertKind::StationSpoolFull.as_str(),
            crate::alerts::AlertKind::ClockDrift.as_str(),
        ] {
            assert!(AlertKind::parse(written).is_some(), "{written}");
        }
        for k in AlertKind::ALL {
            assert_eq!(AlertKind::parse(k.as_str()), Some(k));
        }
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for r in RevisionReason::ALL {
            assert_eq!(RevisionReason::parse(r.code()), Some(r));
        }
    }

    #[test]
    fn the_workflow_only_moves_forward_and_every_status_is_reachable() {
        let position = |s: Status| Status::ALL.iter().position(|x| *x == s).unwrap();
        let mut reached = vec![Status::New];
        let mut i = 0;
        while let Some(&from) = reached.get(i) {
            for &to in from.next() {
                assert!(position(to) > position(from), "{from:?} → {to:?}");
                if !reached.contains(&to) {
                    reached.push(to);
                }
            }
            i += 1;
        }
        assert_eq!(reached.len(), Status::ALL.len());
        assert!(Status::Resolved.next().is_empty());
    }
}
