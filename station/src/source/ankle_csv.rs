//! The ankle-monitor CSV layout: how a device's memory, read out after a station failure, is
//! replayed through a station (`nachtwacht-station import --format ankle-csv`). Documented in
//! `docs/bundle-format.md`:
//!
//! ```text
//! time,tac_g_dl,ambient_g_dl,skin_temp_c,ir,strap
//! 2026-11-20T08:00:00Z,0.000,0.000,33.1,1.02,closed
//! ```
//!
//! One row per reading, times in RFC 3339 with an offset (stored as UTC), strap `closed` or
//! `open`. The header must be exactly this: a file with other columns is refused, not guessed at.
//! Readings are returned in bundles of one UTC day.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, TimestampMillisecondArray};
use nachtwacht_wire::{DeviceKind, Signal, SignalBatch};

use super::BundleContent;
use crate::{Error, Result};

pub const HEADER: &str = "time,tac_g_dl,ambient_g_dl,skin_temp_c,ir,strap";

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub ts_ms: i64,
    pub tac_g_dl: f64,
    pub ambient_g_dl: f64,
    pub skin_temp_c: f64,
    pub ir: f64,
    pub strap_closed: bool,
}

pub fn parse(text: &str, what: &str) -> Result<Vec<Reading>> {
    let err = |line: usize, reason: String| Error::Source {
        path: what.to_string(),
        reason: format!("line {line}: {reason}"),
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == HEADER => {}
        Some((_, h)) => return Err(err(1, format!("header {h:?}, expected {HEADER:?}"))),
        None => return Err(err(1, "empty file".into())),
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 6 {
            return Err(err(n, format!("{} fields, expected 6", f.len())));
        }
        let ts_ms = chrono::DateTime::parse_from_rfc3339(f[0])
            .map_err(|e| err(n, format!("time {:?}: {e}", f[0])))?
            .timestamp_millis();
        let num = |k: usize, name: &str| -> Result<f64> {
            f[k].parse::<f64>()
                .map_err(|e| err(n, format!("{name} {:?}: {e}", f[k])))
        };
        let strap_closed = match f[5] {
            "closed" => true,
            "open" => false,
            other => return Err(err(n, format!("strap {other:?}, expected closed or open"))),
        };
        out.push(Reading {
            ts_ms,
            tac_g_dl: num(1, "tac_g_dl")?,
            ambient_g_dl: num(2, "ambient_g_dl")?,
            skin_temp_c: num(3, "skin_temp_c")?,
            ir: num(4, "ir")?,
            strap_closed,
        });
    }
    Ok(out)
}

/// The readings as bundles, one per UTC day, in time order. Rows are sorted by time; validation
/// on the server flags anything implausible, nothing is dropped here.
pub fn bundles(readings: Vec<Reading>, device_serial: &str) -> Vec<BundleContent> {
    let mut by_day: BTreeMap<i64, Vec<Reading>> = BTreeMap::new();
    for r in readings {
        by_day
            .entry(r.ts_ms.div_euclid(DAY_MS))
            .or_default()
            .push(r);
    }
    by_day
        .into_values()
        .map(|mut day| {
            day.sort_by_key(|r| r.ts_ms);
            let col = |f: fn(&Reading) -> f64| -> ArrayRef {
                Arc::new(Float64Array::from_iter_values(day.iter().map(f)))
            };
            let arrays: Vec<ArrayRef> = vec![
                Arc::new(
                    TimestampMillisecondArray::from_iter_values(day.iter().map(|r| r.ts_ms))
                        .with_timezone("UTC"),
                ),
                col(|r| r.tac_g_dl),
                col(|r| r.ambient_g_dl),
                col(|r| r.skin_temp_c),
                col(|r| r.ir),
                Arc::new(BooleanArray::from(
                    day.iter().map(|r| r.strap_closed).collect::<Vec<_>>(),
                )),
            ];
            BundleContent {
                device_serial: device_serial.to_string(),
                device_kind: DeviceKind::AnkleMonitor,
                batches: vec![SignalBatch::nominal(
                    Signal::Ankle,
                    RecordBatch::try_new(Signal::Ankle.schema(), arrays).expect("ankle schema"),
                )],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "time,tac_g_dl,ambient_g_dl,skin_temp_c,ir,strap
2026-11-20T23:30:00Z,0.000,0.000,33.1,1.02,closed
2026-11-21T00:00:00+01:00,0.031,0.001,33.0,1.01,closed
2026-11-21T00:30:00Z,0.045,0.000,24.5,1.60,open
";

    #[test]
    fn parses_rows_and_splits_bundles_by_utc_day() {
        let rows = parse(SAMPLE, "sample").unwrap();
        assert_eq!(rows.len(), 3);
        // 00:00 at +01:00 is 23:00 UTC the day before.
        assert_eq!(rows[1].ts_ms, rows[0].ts_ms - 30 * 60_000);
        assert!(!rows[2].strap_closed);
        let bundles = bundles(rows, "AM-1");
        assert_eq!(bundles.len(), 2);
        assert_eq!(bundles[0].batches[0].batch.num_rows(), 2);
        let (first, last) = bundles[0].span().unwrap();
        assert!(first < last, "sorted by time");
    }

    #[test]
    fn a_wrong_header_or_field_names_the_line() {
        let e = parse("time,tac\n", "x").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = parse(
            &format!("{HEADER}\n2026-11-20T23:30:00Z,0,0,33,1,ajar\n"),
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 2") && e.contains("ajar"), "{e}");
        let e = parse(&format!("{HEADER}\nyesterday,0,0,33,1,open\n"), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
