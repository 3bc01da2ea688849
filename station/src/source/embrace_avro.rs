//! Reader for EmbracePlus raw-data files (Avro): one file per participant per 30 minutes, holding
//! `rawData` with `eda`, `temperature` and `bvp` (`timestampStart` in µs, `samplingFrequency` in
//! Hz, `values`), `accelerometer` (`x`, `y`, `z` in ADC counts with `imuParams` to convert them),
//! `systolicPeaks.peaksTimeNanos` and `tags.tagsTimeMicros` (../shared/domain.md).
//!
//! Fields are looked up by name, so additions in later schema versions are ignored; a missing
//! field is an error that names it. Accelerometer counts become g as
//! `count × (physicalMax − physicalMin) / (digitalMax − digitalMin)` — the conversion Empatica
//! documents for schema 6.5.0 and later, where `imuParams` carries the ranges. Files from older
//! schemas are refused rather than converted with a guessed scale.
//!
//! Systolic peaks become inter-beat intervals: the time of each peak after the first and the
//! seconds since the previous one.

use std::path::Path;
use std::sync::Arc;

use apache_avro::types::Value;
use arrow::array::{ArrayRef, Float64Array, RecordBatch, TimestampMillisecondArray};
use nachtwacht_wire::{DeviceKind, Signal, SignalBatch};

use super::BundleContent;
use crate::{Error, Result};

/// The oldest schema whose accelerometer conversion we know (see the module docs).
pub const MIN_SCHEMA: (i64, i64) = (6, 5);

fn field<'a>(v: &'a Value, name: &str, what: &str) -> Result<&'a Value> {
    let v = match v {
        Value::Union(_, inner) => inner.as_ref(),
        v => v,
    };
    match v {
        Value::Record(fields) => fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| match v {
                Value::Union(_, inner) => inner.as_ref(),
                v => v,
            })
            .ok_or_else(|| err(what, format!("missing field {name:?}"))),
        _ => Err(err(what, format!("expected a record around {name:?}"))),
    }
}

fn err(what: &str, reason: String) -> Error {
    Error::Source {
        path: what.to_string(),
        reason,
    }
}

fn number(v: &Value, what: &str) -> Result<f64> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Long(i) => Ok(*i as f64),
        Value::Float(f) => Ok(*f as f64),
        Value::Double(f) => Ok(*f),
        Value::Union(_, inner) => number(inner, what),
        other => Err(err(what, format!("expected a number, found {other:?}"))),
    }
}

fn numbers(v: &Value, what: &str) -> Result<Vec<f64>> {
    match v {
        Value::Array(items) => items.iter().map(|i| number(i, what)).collect(),
        _ => Err(err(what, "expected an array of numbers".into())),
    }
}

/// Whole-number arrays (nanosecond and microsecond times): kept as integers, since an f64 cannot
/// hold a nanosecond Unix time exactly.
fn longs(v: &Value, what: &str) -> Result<Vec<i64>> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Long(x) => Ok(*x),
                Value::Int(x) => Ok(*x as i64),
                other => Err(err(what, format!("expected an integer, found {other:?}"))),
            })
            .collect(),
        _ => Err(err(what, "expected an array of integers".into())),
    }
}

fn ts_array(ts: impl IntoIterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(ts).with_timezone("UTC"))
}

/// A sampled signal: `timestampStart` (µs), `samplingFrequency` (Hz), value columns.
fn sampled(
    raw: &Value,
    name: &str,
    signal: Signal,
    columns: Vec<Vec<f64>>,
    what: &str,
) -> Result<SignalBatch> {
    let block = field(raw, name, what)?;
    let start_us = number(field(block, "timestampStart", what)?, what)?;
    let rate = number(field(block, "samplingFrequency", what)?, what)?;
    if !(rate > 0.0 && rate <= 1024.0) {
        return Err(err(
            what,
            format!("{name}: implausible sampling frequency {rate}"),
        ));
    }
    let n = columns.first().map_or(0, Vec::len);
    let ts = (0..n).map(|i| ((start_us + i as f64 * 1e6 / rate) / 1000.0).round() as i64);
    let mut arrays = vec![ts_array(ts)];
    arrays.extend(
        columns
            .into_iter()
            .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef),
    );
    let batch = RecordBatch::try_new(signal.schema(), arrays)
        .map_err(|e| err(what, format!("{name}: {e}")))?;
    Ok(SignalBatch {
        signal,
        batch,
        rate_hz: Some(rate),
    })
}

/// Reads one EmbracePlus Avro file into one bundle's worth of signals.
pub fn read_file(path: &Path, device_serial: &str) -> Result<BundleContent> {
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| err(&what, e.to_string()))?;
    read_from(std::io::BufReader::new(file), &what, device_serial)
}

/// [`read_file`] over any reader (`what` names it in errors).
pub fn read_from(
    input: impl std::io::Read,
    what: &str,
    device_serial: &str,
) -> Result<BundleContent> {
    let what = what.to_string();
    let reader = apache_avro::Reader::new(input).map_err(|e| err(&what, e.to_string()))?;
    let mut batches = Vec::new();
    for record in reader {
        let record = record.map_err(|e| err(&what, e.to_string()))?;
        batches.extend(read_record(&record, &what)?);
    }
    Ok(BundleContent {
        device_serial: device_serial.to_string(),
        device_kind: DeviceKind::Wristband,
        batches,
    })
}

fn read_record(record: &Value, what: &str) -> Result<Vec<SignalBatch>> {
    let version = field(record, "schemaVersion", what)?;
    let major = number(field(version, "major", what)?, what)? as i64;
    let minor = number(field(version, "minor", what)?, what)? as i64;
    if (major, minor) < MIN_SCHEMA {
        return Err(err(
            what,
            format!(
                "schema {major}.{minor} predates {}.{}: its accelerometer scale is not known here",
                MIN_SCHEMA.0, MIN_SCHEMA.1
            ),
        ));
    }
    let raw = field(record, "rawData", what)?;
    let mut out = Vec::new();
    for (name, signal) in [
        ("eda", Signal::Eda),
        ("temperature", Signal::Temp),
        ("bvp", Signal::Bvp),
    ] {
        let values = numbers(field(field(raw, name, what)?, "values", what)?, what)?;
        out.push(sampled(raw, name, signal, vec![values], what)?);
    }

    let acc = field(raw, "accelerometer", what)?;
    let imu = field(acc, "imuParams", what)?;
    let p = |n: &str| -> Result<f64> { number(field(imu, n, what)?, what) };
    let digital = p("digitalMax")? - p("digitalMin")?;
    if digital == 0.0 {
        return Err(err(
            what,
            "accelerometer: digitalMax equals digitalMin".into(),
        ));
    }
    let scale = (p("physicalMax")? - p("physicalMin")?) / digital;
    let axes = ["x", "y", "z"]
        .iter()
        .map(|a| {
            numbers(field(acc, a, what)?, what).map(|v| v.into_iter().map(|c| c * scale).collect())
        })
        .collect::<Result<Vec<Vec<f64>>>>()?;
    if axes.iter().any(|a| a.len() != axes[0].len()) {
        return Err(err(what, "accelerometer axes differ in length".into()));
    }
    out.push(sampled(raw, "accelerometer", Signal::Acc, axes, what)?);

    let peaks = longs(
        field(field(raw, "systolicPeaks", what)?, "peaksTimeNanos", what)?,
        what,
    )?;
    let (ts, ibi): (Vec<i64>, Vec<f64>) = peaks
        .windows(2)
        .map(|w| (w[1].div_euclid(1_000_000), (w[1] - w[0]) as f64 / 1e9))
        .unzip();
    out.push(SignalBatch::nominal(
        Signal::Ibi,
        RecordBatch::try_new(
            Signal::Ibi.schema(),
            vec![ts_array(ts), Arc::new(Float64Array::from(ibi))],
        )
        .map_err(|e| err(what, e.to_string()))?,
    ));

    let tags = longs(
        field(field(raw, "tags", what)?, "tagsTimeMicros", what)?,
        what,
    )?;
    out.push(SignalBatch::nominal(
        Signal::Tag,
        RecordBatch::try_new(
            Signal::Tag.schema(),
            vec![ts_array(tags.iter().map(|us| us.div_euclid(1000)))],
        )
        .map_err(|e| err(what, e.to_string()))?,
    ));
    Ok(out)
}

/// Writes an Avro file in the EmbracePlus raw-data layout (the fields this reader uses). For
/// tests and the benchmark: no real EmbracePlus file can be shipped with the code.
pub mod testfile {
    use super::*;

    pub const SCHEMA: &str = r#"{
      "type": "record", "name": "Session", "namespace": "empatica.format.avro",
      "fields": [
        {"name": "schemaVersion", "type": {"type": "record", "name": "Version", "fields": [
          {"name": "major", "type": "int"}, {"name": "minor", "type": "int"}, {"name": "patch", "type": "int"}]}},
        {"name": "rawData", "type": {"type": "record", "name": "RawData", "fields": [
          {"name": "accelerometer", "type": {"type": "record", "name": "Accelerometer", "fields": [
            {"name": "timestampStart", "type": "long"},
            {"name": "samplingFrequency", "type": "float"},
            {"name": "imuParams", "type": {"type": "record", "name": "ImuParams", "fields": [
              {"name": "physicalMin", "type": "int"}, {"name": "physicalMax", "type": "int"},
              {"name": "digitalMin", "type": "int"}, {"name": "digitalMax", "type": "int"}]}},
            {"name": "x", "type": {"type": "array", "items": "int"}},
            {"name": "y", "type": {"type": "array", "items": "int"}},
            {"name": "z", "type": {"type": "array", "items": "int"}}]}},
          {"name": "eda", "type": {"type": "record", "name": "Eda", "fields": [
            {"name": "timestampStart", "type": "long"}, {"name": "samplingFrequency", "type": "float"},
            {"name": "values", "type": {"type": "array", "items": "float"}}]}},
          {"name": "temperature", "type": {"type": "record", "name": "Temperature", "fields": [
            {"name": "timestampStart", "type": "long"}, {"name": "samplingFrequency", "type": "float"},
            {"name": "values", "type": {"type": "array", "items": "float"}}]}},
          {"name": "bvp", "type": {"type": "record", "name": "Bvp", "fields": [
            {"name": "timestampStart", "type": "long"}, {"name": "samplingFrequency", "type": "float"},
            {"name": "values", "type": {"type": "array", "items": "float"}}]}},
          {"name": "systolicPeaks", "type": {"type": "record", "name": "SystolicPeaks", "fields": [
            {"name": "peaksTimeNanos", "type": {"type": "array", "items": "long"}}]}},
          {"name": "tags", "type": {"type": "record", "name": "Tags", "fields": [
            {"name": "tagsTimeMicros", "type": {"type": "array", "items": "long"}}]}}
        ]}}
      ]}"#;

    /// `minutes` of plausible readings from `start_us`, with schema version `(major, minor)`.
    pub fn write(path: &Path, start_us: i64, minutes: i64, version: (i32, i32)) -> Result<()> {
        use apache_avro::types::Record;
        let schema =
            apache_avro::Schema::parse_str(SCHEMA).map_err(|e| err("schema", e.to_string()))?;
        let secs = minutes * 60;
        let sampled = |rate: f32, f: &dyn Fn(i64) -> f32| {
            let n = secs * rate as i64;
            Value::Record(vec![
                ("timestampStart".into(), Value::Long(start_us)),
                ("samplingFrequency".into(), Value::Float(rate)),
                (
                    "values".into(),
                    Value::Array((0..n).map(|i| Value::Float(f(i))).collect()),
                ),
            ])
        };
        // A beat every 850 ms.
        let (first_ns, end_ns) = (start_us * 1000, (start_us + secs * 1_000_000) * 1000);
        let peaks: Vec<Value> = (0..)
            .map(|k: i64| first_ns + k * 850_000_000)
            .take_while(|ns| *ns < end_ns)
            .map(Value::Long)
            .collect();
        let counts = |v: i32| Value::Array((0..secs * 64).map(|_| Value::Int(v)).collect());
        let raw = Value::Record(vec![
            (
                "accelerometer".into(),
                Value::Record(vec![
                    ("timestampStart".into(), Value::Long(start_us)),
                    ("samplingFrequency".into(), Value::Float(64.0)),
                    (
                        "imuParams".into(),
                        Value::Record(vec![
                            ("physicalMin".into(), Value::Int(-16)),
                            ("physicalMax".into(), Value::Int(16)),
                            ("digitalMin".into(), Value::Int(-32768)),
                            ("digitalMax".into(), Value::Int(32767)),
                        ]),
                    ),
                    ("x".into(), counts(0)),
                    ("y".into(), counts(0)),
                    ("z".into(), counts(2048)),
                ]),
            ),
            (
                "eda".into(),
                sampled(4.0, &|i| 2.0 + (i % 40) as f32 * 0.001),
            ),
            ("temperature".into(), sampled(1.0, &|_| 33.4)),
            (
                "bvp".into(),
                sampled(64.0, &|i| ((i as f32) * 0.12).sin() * 40.0),
            ),
            (
                "systolicPeaks".into(),
                Value::Record(vec![("peaksTimeNanos".into(), Value::Array(peaks))]),
            ),
            (
                "tags".into(),
                Value::Record(vec![(
                    "tagsTimeMicros".into(),
                    Value::Array(vec![Value::Long(start_us + 90_000_000)]),
                )]),
            ),
        ]);
        let mut writer = apache_avro::Writer::new(&schema, Vec::new())
            .map_err(|e| err("avro", e.to_string()))?;
        let mut record = Record::new(&schema).expect("record schema");
        record.put(
            "schemaVersion",
            Value::Record(vec![
                ("major".into(), Value::Int(version.0)),
                ("minor".into(), Value::Int(version.1)),
                ("patch".into(), Value::Int(0)),
            ]),
        );
        record.put("rawData", raw);
        writer
            .append_value(record)
            .map_err(|e| err("avro", e.to_string()))?;
        let bytes = writer
            .into_inner()
            .map_err(|e| err("avro", e.to_string()))?;
        std::fs::write(path, bytes).map_err(|e| err(&path.display().to_string(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn reads_an_embraceplus_file_into_v1_signals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1-1-S01_1700000000.avro");
        let start_us = 1_700_000_000_000_000;
        testfile::write(&path, start_us, 2, (6, 5)).unwrap();
        let content = read_file(&path, "EP-1").unwrap();
        let get = |s: Signal| content.batches.iter().find(|b| b.signal == s).unwrap();
        assert_eq!(get(Signal::Eda).batch.num_rows(), 2 * 60 * 4);
        assert_eq!(get(Signal::Eda).rate_hz, Some(4.0));
        assert_eq!(get(Signal::Bvp).batch.num_rows(), 2 * 60 * 64);
        let acc = get(Signal::Acc);
        let z = acc
            .batch
            .column(3)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        // 2048 counts × 32 g / 65535 counts ≈ 1 g.
        assert!((z.value(0) - 1.0).abs() < 0.01, "{}", z.value(0));
        let ibi = get(Signal::Ibi);
        assert!(ibi.batch.num_rows() > 100);
        let v = ibi
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert!((v.value(0) - 0.85).abs() < 1e-9);
        let ts = get(Signal::Tag)
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap()
            .value(0);
        assert_eq!(ts, 1_700_000_090_000);
        assert!(get(Signal::Temp).batch.column(1).null_count() == 0);
    }

    #[test]
    fn an_older_schema_and_a_broken_file_are_refused_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.avro");
        testfile::write(&old, 1_700_000_000_000_000, 1, (6, 4)).unwrap();
        let e = read_file(&old, "EP-1").unwrap_err().to_string();
        assert!(e.contains("6.4") && e.contains("predates"), "{e}");
        let broken = dir.path().join("broken.avro");
        std::fs::write(&broken, b"Obj\x01 definitely not avro").unwrap();
        assert!(read_file(&broken, "EP-1").is_err());
    }
}
