//! Reader for the Empatica E4 CSV export: one file per signal; row 1 is the start time (UTC Unix
//! seconds), row 2 the sample rate in Hz, then one sample per row (three columns for ACC, in 1/64 g).
//!
//! `IBI.csv` is different: row 1 is `<start>, IBI`, then `seconds-since-start, interval-seconds` per
//! beat. `tags.csv` holds one Unix time per button press. Both are optional in an export.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, TimestampMillisecondArray};
use nachtwacht_wire::{DeviceKind, Signal, SignalBatch};

use super::BundleContent;
use crate::{Error, Result};

/// The latest Unix time (seconds) a device file may name: the start of the year 3000. A time past
/// it is a damaged file, and would overflow the millisecond timestamps.
const LATEST_UNIX_S: f64 = 32_503_680_000.0;

/// Unix seconds as milliseconds, for a time between 1970 and [`LATEST_UNIX_S`].
fn unix_ms(seconds: f64) -> Option<i64> {
    (seconds.is_finite() && (0.0..=LATEST_UNIX_S).contains(&seconds))
        .then(|| (seconds * 1000.0).round() as i64)
}

/// One parsed E4 CSV file.
#[derive(Debug, Clone, PartialEq)]
pub struct E4File {
    pub start_ms: i64,
    pub rate_hz: f64,
    /// One vector per column.
    pub columns: Vec<Vec<f64>>,
}

impl E4File {
    pub fn timestamps(&self) -> Vec<i64> {
        let n = self.columns.first().map_or(0, Vec::len);
        (0..n)
            .map(|i| {
                self.start_ms
                    .saturating_add((i as f64 * 1000.0 / self.rate_hz).round() as i64)
            })
            .collect()
    }
}

pub fn parse_e4_csv(text: &str, width: usize, what: &str) -> Result<E4File> {
    let err = |reason: String| Error::Source {
        path: what.to_string(),
        reason,
    };
    let mut lines = text.lines();
    let first = |line: Option<&str>, name: &str| -> Result<f64> {
        let line = line.ok_or_else(|| err(format!("missing {name} row")))?;
        let field = line.split(',').next().unwrap_or("").trim();
        field
            .parse::<f64>()
            .map_err(|e| err(format!("{name} row {line:?}: {e}")))
    };
    let start_s = first(lines.next(), "start time")?;
    let start_ms =
        unix_ms(start_s).ok_or_else(|| err(format!("start time {start_s} is not a Unix time")))?;
    let rate_hz = first(lines.next(), "sample rate")?;
    if !(0.001..=1024.0).contains(&rate_hz) {
        return Err(err(format!("implausible sample rate {rate_hz} Hz")));
    }
    let mut columns = vec![Vec::new(); width];
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != width {
            return Err(err(format!(
                "row {}: expected {width} columns, found {}",
                i + 3,
                fields.len()
            )));
        }
        for (col, field) in columns.iter_mut().zip(fields) {
            col.push(
                field
                    .parse::<f64>()
                    .map_err(|e| err(format!("row {}: {field:?}: {e}", i + 3)))?,
            );
        }
    }
    Ok(E4File {
        start_ms,
        rate_hz,
        columns,
    })
}

/// Reads an export directory into one bundle's worth of signal batches.
pub fn read_export(dir: &Path, device_serial: &str) -> Result<BundleContent> {
    read_export_files(
        |file| std::fs::read_to_string(dir.join(file)),
        &dir.display().to_string(),
        device_serial,
    )
}

/// [`read_export`] over the export's files as `read` returns them by name (`EDA.csv`, ...): the
/// reading of the files kept apart from the parsing, so the parsing can be fed from memory.
pub fn read_export_files(
    read: impl Fn(&str) -> std::io::Result<String>,
    dir: &str,
    device_serial: &str,
) -> Result<BundleContent> {
    let files: [(&str, Signal, usize, f64); 5] = [
        ("EDA.csv", Signal::Eda, 1, 1.0),
        ("BVP.csv", Signal::Bvp, 1, 1.0),
        ("HR.csv", Signal::Hr, 1, 1.0),
        ("TEMP.csv", Signal::Temp, 1, 1.0),
        // The E4 reports acceleration in 1/64 g; the wire format carries g.
        ("ACC.csv", Signal::Acc, 3, 1.0 / 64.0),
    ];
    let mut batches = Vec::new();
    for (file, signal, width, scale) in files {
        let path = format!("{dir}/{file}");
        let text = read(file).map_err(|e| Error::Source {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let parsed = parse_e4_csv(&text, width, &path)?;
        let ts = TimestampMillisecondArray::from(parsed.timestamps()).with_timezone("UTC");
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(ts)];
        for col in parsed.columns {
            arrays.push(Arc::new(Float64Array::from_iter_values(
                col.into_iter().map(|v| v * scale),
            )));
        }
        let batch = RecordBatch::try_new(signal.schema(), arrays)
            .map_err(|e| Error::Seal(e.to_string()))?;
        batches.push(SignalBatch {
            signal,
            batch,
            rate_hz: Some(parsed.rate_hz),
        });
    }
    for (file, parse) in [
        (
            "IBI.csv",
            parse_ibi_csv as fn(&str, &str) -> Result<SignalBatch>,
        ),
        ("tags.csv", parse_tags_csv),
    ] {
        let path = format!("{dir}/{file}");
        match read(file) {
            Ok(text) => batches.push(parse(&text, &path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Source {
                    path,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(BundleContent {
        device_serial: device_serial.to_string(),
        device_kind: DeviceKind::Wristband,
        batches,
    })
}

fn event_batch(signal: Signal, ts: Vec<i64>, values: Vec<ArrayRef>) -> Result<SignalBatch> {
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(
        TimestampMillisecondArray::from(ts).with_timezone("UTC"),
    )];
    arrays.extend(values);
    let batch =
        RecordBatch::try_new(signal.schema(), arrays).map_err(|e| Error::Seal(e.to_string()))?;
    Ok(SignalBatch::nominal(signal, batch))
}

/// `IBI.csv`: `<start>, IBI`, then `seconds-since-start, interval-seconds` per beat.
pub fn parse_ibi_csv(text: &str, what: &str) -> Result<SignalBatch> {
    let err = |reason: String| Error::Source {
        path: what.to_string(),
        reason,
    };
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| err("empty file".into()))?;
    let start_s: f64 = header
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .map_err(|e| err(format!("start time row {header:?}: {e}")))?;
    let (mut ts, mut ibi) = (Vec::new(), Vec::new());
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split(',').map(str::trim);
        let mut num = |name: &str| -> Result<f64> {
            let f = fields
                .next()
                .ok_or_else(|| err(format!("row {}: missing {name}", i + 2)))?;
            f.parse::<f64>()
                .map_err(|e| err(format!("row {}: {name} {f:?}: {e}", i + 2)))
        };
        let offset = num("offset")?;
        let interval = num("interval")?;
        ts.push(unix_ms(start_s + offset).ok_or_else(|| {
            err(format!(
                "row {}: {start_s} + {offset} is not a Unix time",
                i + 2
            ))
        })?);
        ibi.push(interval);
    }
    event_batch(Signal::Ibi, ts, vec![Arc::new(Float64Array::from(ibi))])
}

/// `tags.csv`: one Unix time (seconds) per button press.
pub fn parse_tags_csv(text: &str, what: &str) -> Result<SignalBatch> {
    let ts = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            let bad = |reason: String| Error::Source {
                path: what.to_string(),
                reason: format!("row {}: {l:?}: {reason}", i + 1),
            };
            let s = l.parse::<f64>().map_err(|e| bad(e.to_string()))?;
            unix_ms(s).ok_or_else(|| bad("not a Unix time".into()))
        })
        .collect::<Result<Vec<_>>>()?;
    event_batch(Signal::Tag, ts, vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_rows_and_samples() {
        let f = parse_e4_csv(
            "1560279825.000000\n4.000000\n0.000000\n0.020499\n",
            1,
            "EDA",
        )
        .unwrap();
        assert_eq!(f.start_ms, 1_560_279_825_000);
        assert_eq!(f.rate_hz, 4.0);
        assert_eq!(f.columns, vec![vec![0.0, 0.020499]]);
        assert_eq!(f.timestamps(), vec![1_560_279_825_000, 1_560_279_825_250]);
    }

    #[test]
    fn reports_the_row_that_is_wrong() {
        let err = parse_e4_csv("1\n32\n1,2,3\n1,2\n", 3, "ACC").unwrap_err();
        assert!(err.to_string().contains("row 4"), "{err}");
        assert!(parse_e4_csv("1\n0\n", 1, "EDA").is_err());
        assert!(parse_e4_csv("", 1, "EDA").is_err());
    }

    #[test]
    fn parses_ibi_and_tags() {
        let ibi = parse_ibi_csv("100.0, IBI\n1.5,0.75\n2.25,0.75\n", "IBI").unwrap();
        assert_eq!(ibi.batch.num_rows(), 2);
        assert!(parse_ibi_csv("100.0, IBI\n1.5\n", "IBI").is_err());
        let tags = parse_tags_csv("1560279900.5\n1560279950\n", "tags").unwrap();
        assert_eq!(tags.batch.num_rows(), 2);
        assert_eq!(tags.batch.num_columns(), 1);
        assert!(parse_tags_csv("soon\n", "tags").is_err());
    }

    #[test]
    fn reads_the_real_sample_export() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/e4-sample");
        let content = read_export(&dir, "E4-TEST").unwrap();
        let eda = content
            .batches
            .iter()
            .find(|b| b.signal == Signal::Eda)
            .unwrap();
        assert_eq!(eda.batch.num_rows(), 9998);
        let acc = content
            .batches
            .iter()
            .find(|b| b.signal == Signal::Acc)
            .unwrap();
        let ibi = content
            .batches
            .iter()
            .find(|b| b.signal == Signal::Ibi)
            .unwrap();
        // First beat: 83.503822 s after 1560279825, interval 0.609403 s.
        let ts = ibi
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), 1_560_279_908_504);
        assert_eq!(ibi.rate_hz, None);
        assert_eq!(eda.rate_hz, Some(4.0));
        // First ACC row is -61, 25, 6 in 1/64 g.
        let x = acc
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert!((x.value(0) + 61.0 / 64.0).abs() < 1e-12);
    }
}
