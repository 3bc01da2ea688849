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
