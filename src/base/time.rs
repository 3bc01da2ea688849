//! Time as the server counts it: milliseconds since the Unix epoch (UTC), and the bounds on what a
//! station may claim about its own clock.

/// Milliseconds since the Unix epoch by the system clock. Code that must be testable takes `now`
/// as an argument instead of calling this.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Milliseconds in an hour and in a (UTC) day: every duration in ms is written with these.
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Midnight UTC starting the day that contains `ms`.
pub fn day_start_ms(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

/// Midnight UTC starting `day`, in milliseconds since the Unix epoch.
pub fn midnight_ms(day: chrono::NaiveDate) -> i64 {
    day.and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis()
}

/// The UTC calendar day containing `ms`, as `YYYY-MM-DD`.
pub fn date_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// `YYYY-MM-DD HH:MM:SS UTC` of `ms`.
pub fn date_time_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// The largest station clock offset the server takes as reported (one year either way). A heartbeat
/// claiming more is stored at this bound: still far past any clock-drift limit, so the alert is
/// raised, but no arithmetic on it can overflow.
pub const MAX_CLOCK_OFFSET_MS: i64 = 366 * DAY_MS;

/// A reported clock offset, saturated at ±[`MAX_CLOCK_OFFSET_MS`].
pub fn bounded_clock_offset_ms(offset_ms: i64) -> i64 {
    offset_ms.clamp(-MAX_CLOCK_OFFSET_MS, MAX_CLOCK_OFFSET_MS)
}

/// The time zone people read times in (`[http] time_zone`, Europe/Amsterdam by default). Storage,
/// datasets and the evidence stay in UTC; pages, charts, filters and reports show local time,
/// daylight saving included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(chrono_tz::Tz);

impl Zone {
    pub const UTC: Zone = Zone(chrono_tz::UTC);

    /// A zone by its IANA name (`Europe/Amsterdam`), or `None`.
    pub fn named(name: &str) -> Option<Zone> {
        name.parse::<chrono_tz::Tz>().ok().map(Zone)
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    fn local(self, ms: i64) -> Option<chrono::DateTime<chrono_tz::Tz>> {
        chrono::DateTime::from_timestamp_millis(ms).map(|t| t.with_timezone(&self.0))
    }

    /// `ms` formatted in this zone with a `chrono` format string.
    pub fn format(self, ms: i64, fmt: &str) -> String {
        self.local(ms)
            .map(|t| t.format(fmt).to_string())
            .unwrap_or_else(|| format!("{ms} ms"))
    }

    /// The abbreviation in force at `ms` (`CET`, `CEST`).
    pub fn abbreviation(self, ms: i64) -> String {
        self.format(ms, "%Z")
    }

    /// The local calendar day containing `ms`.
    pub fn date_of(self, ms: i64) -> chrono::NaiveDate {
        self.local(ms).map(|t| t.date_naive()).unwrap_or_default()
    }

    /// The first instant of local `day` (midnight, or the first moment after it when a clock
    /// change skips midnight), in ms since the epoch.
    pub fn day_start_ms(self, day: chrono::NaiveDate) -> i64 {
        self.at(day, 0)
    }

    /// Local `hour`:00 on `day` in ms since the epoch; the first moment after it when a clock
    /// change skips that hour, the first of the two when it happens twice.
    pub fn at(self, day: chrono::NaiveDate, hour: u32) -> i64 {
        use chrono::TimeZone;
        let mut t =
            day.and_time(chrono::NaiveTime::from_hms_opt(hour.min(23), 0, 0).unwrap_or_default());
        for _ in 0..4 {
            if let Some(local) = self.0.from_local_datetime(&t).earliest() {
                return local.timestamp_millis();
            }
            t += chrono::Duration::minutes(30);
        }
        midnight_ms(day) + hour as i64 * HOUR_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn amsterdam_is_one_hour_ahead_in_winter_two_in_summer_and_its_days_follow() {
        let ams = Zone::named("Europe/Amsterdam").unwrap();
        let winter = utc("2026-01-15T12:00:00Z");
        let summer = utc("2026-07-01T12:00:00Z");
        assert_eq!(ams.format(winter, "%H:%M %Z"), "13:00 CET");
        assert_eq!(ams.format(summer, "%H:%M %Z"), "14:00 CEST");
        // An evening drinking event at 23:30 UTC in summer is the next local day.
        let late = utc("2026-07-01T23:30:00Z");
        assert_eq!(ams.date_of(late).to_string(), "2026-07-02");
        // The day the clocks go forward (29 March 2026) starts at 23:00 UTC the day before and
        // lasts 23 hours; the day they go back (25 October) lasts 25.
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            ams.day_start_ms(day("2026-03-29")),
            utc("2026-03-28T23:00:00Z")
        );
        assert_eq!(
            ams.day_start_ms(day("2026-03-30")) - ams.day_start_ms(day("2026-03-29")),
            23 * HOUR_MS
        );
        assert_eq!(
            ams.day_start_ms(day("2026-10-26")) - ams.day_start_ms(day("2026-10-25")),
            25 * HOUR_MS
        );
        assert!(Zone::named("Mars/Olympus").is_none());
        assert_eq!(Zone::UTC.format(winter, "%H:%M"), "12:00");
    }
}
