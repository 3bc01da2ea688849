//! The closed set of alert kinds. Every alert stored has one of these kinds, in exactly the string
//! form [`AlertKind::as_str`] gives; the officer's filter offers exactly these.

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

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
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

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
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
            crate::communication::KIND_SILENT,
            crate::communication::KIND_CRITICAL,
            crate::communication::KIND_DEVICE,
            crate::communication::KIND_SPOOL_FULL,
            crate::communication::KIND_CLOCK,
            crate::evaluate::alcohol_alerts::KIND_ALCOHOL,
            crate::evaluate::alcohol_alerts::KIND_INTERFERENT,
        ] {
            assert!(AlertKind::parse(written).is_some(), "{written}");
        }
        for k in AlertKind::ALL {
            assert_eq!(AlertKind::parse(k.as_str()), Some(k));
        }
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
    }
}
