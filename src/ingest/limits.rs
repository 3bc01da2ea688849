//! Per-station limits, pure (time is passed in): a token bucket for bundles per minute and a count
//! of open connections. One noisy or compromised station can use its own share and nothing more.

use std::collections::HashMap;

/// Token bucket: `per_minute` bundles sustained, bursts up to the same number.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: f64,
    buckets: HashMap<i64, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1) as f64,
            buckets: HashMap::new(),
        }
    }

    /// Takes one bundle's token, or says how long until one is available.
    pub fn try_take(&mut self, station: i64, now_ms: i64) -> Result<(), u64> {
        let capacity = self.per_minute;
        let rate_per_ms = self.per_minute / 60_000.0;
        let b = self.buckets.entry(station).or_insert(Bucket {
            tokens: capacity,
            at_ms: now_ms,
        });
        let elapsed = (now_ms - b.at_ms).max(0) as f64;
        b.tokens = (b.tokens + elapsed * rate_per_ms).min(capacity);
        b.at_ms = now_ms;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate_per_ms).ceil() as u64)
        }
    }
}

/// Open connections per station, against a maximum.
#[derive(Debug, Default)]
pub struct ConnectionCount {
    open: HashMap<i64, u32>,
}

impl ConnectionCount {
    /// Counts a new connection unless the station already has `max` open.
    pub fn try_open(&mut self, station: i64, max: u32) -> bool {
        let n = self.open.entry(station).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    pub fn close(&mut self, station: i64) {
        if let Some(n) = self.open.get_mut(&station) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.open.remove(&station);
            }
        }
    }

    pub fn total(&self) -> u32 {
        self.open.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_station_gets_its_burst_then_its_rate_and_others_are_unaffected() {
        let mut r = RateLimiter::new(60); // one a second
        for _ in 0..60 {
            assert!(r.try_take(1, 0).is_ok());
        }
        let wait = r.try_take(1, 0).unwrap_err();
        assert_eq!(wait, 1_000);
        assert!(
            r.try_take(2, 0).is_ok(),
            "another station has its own bucket"
        );
        assert!(r.try_take(1, 999).is_err());
        assert!(r.try_take(1, 1_000).is_ok());
        assert!(r.try_take(1, 1_000).is_err());
    }

    #[test]
    fn connections_are_counted_per_station() {
        let mut c = ConnectionCount::default();
        assert!(c.try_open(1, 2));
        assert!(c.try_open(1, 2));
        assert!(!c.try_open(1, 2));
        assert!(c.try_open(2, 2));
        c.close(1);
        assert!(c.try_open(1, 2));
        assert_eq!(c.total(), 3);
    }
}
