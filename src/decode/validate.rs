//! Validation as data: every stored sample carries a `quality` bit set saying what is wrong with
//! it, and 0 when nothing is. Samples are flagged, never silently removed, so an auditor can see
//! what the pipelines ignored and why; the pipelines read `quality = 0` only.
//!
//! Structural problems (wrong schema, undeclared rate, unknown format version) are not flagged
//! here: the bundle is refused by `nachtwacht_wire::bundle::decode_bundle` and quarantined.
//!
//! The rules are a table ([`PHYSICAL_RANGES`]) plus four checks on timestamps. Pure: no IO, no
//! clock (the window is passed in).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch, TimestampMillisecondArray, UInt16Array};
use arrow::datatypes::Float64Type;
use nachtwacht_wire::Signal;

/// Before the device was assigned to the person.
pub const BEFORE_ASSIGNMENT: u16 = 1 << 0;
/// Later than the server's receipt time plus the station's reported clock offset and a margin.
pub const IN_FUTURE: u16 = 1 << 1;
/// Not after the previous sample of the same signal (timestamps must increase).
pub const NOT_MONOTONIC: u16 = 1 << 2;
/// Sampled faster than declared, or the signal's observed rate differs from its declared one.
pub const RATE_MISMATCH: u16 = 1 << 3;
/// A value outside its physical range, not finite, or an unknown device event.
pub const OUT_OF_RANGE: u16 = 1 << 4;
/// EDA changing faster than skin can (more than 10 µS/s, Kleckner et al. 2018).
pub const EDA_SLOPE: u16 = 1 << 5;
/// EDA measured on skin outside 30–40 °C (Kleckner et al. 2018): the band is off the wrist, or
/// the skin is too cold or hot for conductance to mean arousal.
pub const EDA_SKIN_TEMP: u16 = 1 << 6;
/// At or after the end of the device's assignment to the person (the device was handed in).
pub const AFTER_ASSIGNMENT: u16 = 1 << 7;

/// Flag names, for reports and the `bundles.flags` JSON.
pub const FLAG_NAMES: &[(u16, &str)] = &[
    (BEFORE_ASSIGNMENT, "before-assignment"),
    (IN_FUTURE, "in-future"),
    (NOT_MONOTONIC, "not-monotonic"),
    (RATE_MISMATCH, "rate-mismatch"),
    (OUT_OF_RANGE, "out-of-range"),
    (EDA_SLOPE, "eda-slope"),
    (EDA_SKIN_TEMP, "eda-skin-temp"),
    (AFTER_ASSIGNMENT, "after-assignment"),
];

/// Physical ranges per value column, inclusive. Sources: ../shared/domain.md (EDA 0.05–60 µS valid,
/// E4 accelerometer ±2 g); the others are nachtwacht's own plausibility bounds, wide enough for any
/// living wearer and any device setting we support.
pub const PHYSICAL_RANGES: &[(Signal, &str, f64, f64)] = &[
    (Signal::Ankle, "tac_g_dl", 0.0, 0.5),
    (Signal::Ankle, "ambient_g_dl", 0.0, 0.5),
    (Signal::Ankle, "skin_temp_c", 10.0, 45.0),
    (Signal::Ankle, "ir", 0.0, 10.0),
    (Signal::Eda, "eda_us", 0.05, 60.0),
    (Signal::Bvp, "bvp", -5_000.0, 5_000.0),
    (Signal::Hr, "hr_bpm", 25.0, 240.0),
    (Signal::Temp, "temp_c", 15.0, 45.0),
    (Signal::Acc, "x_g", -16.0, 16.0),
    (Signal::Acc, "y_g", -16.0, 16.0),
    (Signal::Acc, "z_g", -16.0, 16.0),
    (Signal::Ibi, "ibi_s", 0.25, 2.5),
    (Signal::Battery, "battery_pct", 0.0, 100.0),
];

/// EDA slope limit, µS per second.
pub const MAX_EDA_SLOPE_US_PER_S: f64 = 10.0;

/// Skin temperature band in which EDA is valid, °C inclusive (Kleckner et al. 2018).
pub const EDA_SKIN_TEMP_C: (f64, f64) = (30.0, 40.0);

/// How far from an EDA sample the nearest skin-temperature sample may lie for the temperature
/// rule to judge it. Further away (temperature not sent, a gap) the rule does not apply: no
/// evidence either way, so no flag.
pub const EDA_SKIN_TEMP_MAX_DISTANCE_MS: i64 = 5_000;

/// Device events a bundle may report; anything else is flagged out of range.
pub const KNOWN_EVENTS: &[&str] = &[
    "power-on",
    "power-off",
    "self-test-pass",
    "self-test-fail",
    "strap-open",
    "strap-closed",
    "battery-low",
    "firmware-fault",
    "charging-start",
    "charging-stop",
];

/// A signal's `ts` column (the first of every wire schema).
fn timestamps(sb: &nachtwacht_wire::bundle::SignalBatch) -> Option<&TimestampMillisecondArray> {
    sb.batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
}

/// How many rows a device can produce in a bundle's time span, with a margin: a sampled signal
/// its declared rate (at most twice its nominal rate) times the span, plus half again; an event
/// signal a few per second (inter-beat intervals: at most 4 beats per second). A bundle with more
/// rows than that is not what a wearable wrote (a decompression bomb of repeated rows) and is
/// quarantined whole, so it never inflates the dataset.
pub fn check_rows_plausible(
    batches: &[nachtwacht_wire::bundle::SignalBatch],
) -> Result<(), String> {
    for sb in batches {
        let rows = sb.batch.num_rows() as f64;
        let Some(ts) = timestamps(sb) else {
            continue;
        };
        let (Some(lo), Some(hi)) = (arrow::compute::min(ts), arrow::compute::max(ts)) else {
            continue;
        };
        let span_s = (hi.saturating_sub(lo)) as f64 / 1000.0;
        let per_second = match (sb.signal.nominal_rate_hz(), sb.rate_hz) {
            (Some(nominal), Some(declared)) => declared.min(2.0 * nominal),
            _ if sb.signal == Signal::Ibi => 4.0,
            _ => 1.0,
        };
        let limit = (per_second * span_s).mul_add(1.5, 64.0);
        if rows > limit {
            return Err(format!(
                "signal {}: {rows} rows in {span_s:.0} s, more than the device can produce ({limit:.0})",
                sb.signal.name()
            ));
        }
    }
    Ok(())
}

/// The span a device's timestamps may lie in: 1970-01-01 to 2100-01-01 UTC, end exclusive. No
/// wearable's clock produces anything outside it, and everything inside it has a calendar day, so a
/// bundle with a timestamp outside is rejected whole (quarantined) rather than flagged row by row:
/// such a value is forged or corrupt, and no later stage has to cope with it.
pub const TIMESTAMP_RANGE_MS: (i64, i64) = (0, 4_102_444_800_000);

/// Checks every signal's timestamps against [`TIMESTAMP_RANGE_MS`]; the error is the quarantine
/// reason.
pub fn check_timestamp_range(
    batches: &[nachtwacht_wire::bundle::SignalBatch],
) -> Result<(), String> {
    let (lo, hi) = TIMESTAMP_RANGE_MS;
    for sb in batches {
        let Some(ts) = timestamps(sb) else {
            return Err(format!(
                "signal {}: first column is not a timestamp",
                sb.signal.name()
            ));
        };
        if let Some(bad) = ts.values().iter().find(|t| !(lo..hi).contains(*t)) {
            return Err(format!(
                "signal {}: timestamp {bad} ms lies outside 1970-01-01..2100-01-01",
                sb.signal.name()
            ));
        }
    }
    Ok(())
}

/// The time window a sample must fall in.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Start of the device's assignment to the person.
    pub not_before_ms: i64,
    /// Receipt time, plus the station's last reported clock offset (absolute) and a margin.
    pub not_after_ms: i64,
    /// End of the device's assignment, if it has ended (exclusive: the first instant not covered).
    pub assignment_ends_ms: Option<i64>,
}

/// How many samples carry each flag.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlagCounts {
    /// Samples with at least one flag.
    pub flagged: usize,
    pub by_flag: BTreeMap<&'static str, usize>,
}

impl FlagCounts {
    pub fn add(&mut self, flags: &UInt16Array) {
        for f in flags.values().iter().copied().filter(|f| *f != 0) {
            self.flagged += 1;
            for (bit, name) in FLAG_NAMES {
                if f & bit != 0 {
                    *self.by_flag.entry(name).or_default() += 1;
                }
            }
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.by_flag).expect("map of counts serialises")
    }
}

/// The quality flags of every row of `batch` (a v1 signal batch: `ts` first). For EDA,
/// `skin_temperature` is the same bundle's `temp` batch when the programme may collect it (see
/// [`flag_eda_skin_temperature`]); other signals ignore it.
pub fn validate(
    signal: Signal,
    batch: &RecordBatch,
    declared_rate_hz: Option<f64>,
    window: Window,
    skin_temperature: Option<&RecordBatch>,
) -> UInt16Array {
    let n = batch.num_rows();
    let mut flags = vec![0u16; n];
    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("v1 schemas start with a millisecond timestamp");
    let ts = ts.values();

    let mut last_ok: Option<i64> = None;
    for (i, &t) in ts.iter().enumerate() {
        if t < window.not_before_ms {
            flags[i] |= BEFORE_ASSIGNMENT;
        }
        if t > window.not_after_ms {
            flags[i] |= IN_FUTURE;
        }
        if window.assignment_ends_ms.is_some_and(|end| t >= end) {
            flags[i] |= AFTER_ASSIGNMENT;
        }
        match last_ok {
            Some(prev) if t <= prev => flags[i] |= NOT_MONOTONIC,
            _ => last_ok = Some(t),
        }
    }

    if let Some(rate) = declared_rate_hz {
        check_rate(ts, rate, &mut flags);
    }

    let schema = batch.schema();
    for (range_signal, column, lo, hi) in PHYSICAL_RANGES {
        if *range_signal != signal {
            continue;
        }
        let idx = schema
            .index_of(column)
            .expect("range table matches v1 schemas");
        let values = batch.column(idx).as_primitive::<Float64Type>();
        for (i, v) in values.values().iter().enumerate() {
            if !(v.is_finite() && *lo <= *v && *v <= *hi) {
                flags[i] |= OUT_OF_RANGE;
            }
        }
    }

    if signal == Signal::Eda {
        let eda = batch.column(1).as_primitive::<Float64Type>().values();
        for i in 1..n {
            let dt_s = ts[i].saturating_sub(ts[i - 1]) as f64 / 1000.0;
            if dt_s > 0.0 && ((eda[i] - eda[i - 1]) / dt_s).abs() > MAX_EDA_SLOPE_US_PER_S {
                flags[i] |= EDA_SLOPE;
            }
        }
        if let Some(temp) = skin_temperature {
            flag_eda_skin_temperature(ts, temp, &mut flags);
        }
    }

    if signal == Signal::Event {
        let events = batch.column(1).as_string::<i32>();
        for (i, e) in events.iter().enumerate() {
            if !e.is_some_and(|e| KNOWN_EVENTS.contains(&e)) {
                flags[i] |= OUT_OF_RANGE;
            }
        }
    }

    UInt16Array::from(flags)
}

/// Flags EDA samples (timestamps `eda_ts`, flags in place) whose nearest skin-temperature sample
/// from the same bundle (`temp`, a v1 `temp` batch) lies outside [`EDA_SKIN_TEMP_C`]. Temperature samples that
/// are not finite are ignored; so are EDA samples with no temperature within
/// [`EDA_SKIN_TEMP_MAX_DISTANCE_MS`].
fn flag_eda_skin_temperature(eda_ts: &[i64], temp: &RecordBatch, eda_flags: &mut [u16]) {
    let temp_ts = temp
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("v1 schemas start with a millisecond timestamp")
        .values();
    let mut temps: Vec<(i64, f64)> = temp_ts
        .iter()
        .copied()
        .zip(temp.column(1).as_primitive::<Float64Type>().values().iter())
        .filter(|(_, c)| c.is_finite())
        .map(|(t, c)| (t, *c))
        .collect();
    if temps.is_empty() {
        return;
    }
    temps.sort_unstable_by_key(|(t, _)| *t);
    let (lo, hi) = EDA_SKIN_TEMP_C;
    for (i, &t) in eda_ts.iter().enumerate() {
        // The nearest temperature sample: the first at or after t, or the one before it.
        let after = temps.partition_point(|(tt, _)| *tt < t);
        let nearest = [after.checked_sub(1), Some(after)]
            .into_iter()
            .flatten()
            .filter_map(|j| temps.get(j))
            .min_by_key(|(tt, _)| tt.abs_diff(t));
        if let Some((tt, c)) = nearest {
            if tt.abs_diff(t) <= EDA_SKIN_TEMP_MAX_DISTANCE_MS.unsigned_abs()
                && !(lo..=hi).contains(c)
            {
                eda_flags[i] |= EDA_SKIN_TEMP;
            }
        }
    }
}

/// Flags samples that come sooner than half the declared period after their predecessor, and the
/// whole signal when its median interval is more than 10 % off the declared period. Gaps (device
/// off the wrist, out of range) are not errors: wear time is measured downstream.
fn check_rate(ts: &[i64], rate_hz: f64, flags: &mut [u16]) {
    let period_ms = 1000.0 / rate_hz;
    // Saturating: a bundle may carry any timestamps, and is flagged, not refused, for them.
    let mut intervals: Vec<i64> = ts.windows(2).map(|w| w[1].saturating_sub(w[0])).collect();
    for (i, dt) in intervals.iter().enumerate() {
        if *dt > 0 && (*dt as f64) < period_ms / 2.0 {
            flags[i + 1] |= RATE_MISMATCH;
        }
    }
    intervals.retain(|dt| *dt > 0);
    if intervals.len() < 8 {
        return;
    }
    let mid = intervals.len() / 2;
    let median = *intervals.select_nth_unstable(mid).1 as f64;
    // Timestamps are whole milliseconds: allow the rounding of a 64 Hz period (15.625 ms).
    if (median - period_ms).abs() > (period_ms * 0.10).max(1.0) {
        for f in flags.iter_mut() {
            *f |= RATE_MISMATCH;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray};

    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn batch(signal: Signal, ts: Vec<i64>, values: Vec<f64>) -> RecordBatch {
        RecordBatch::try_new(
            signal.schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
                Arc::new(Float64Array::from(values)),
            ],
        )
        .unwrap()
    }

    fn open_window() -> Window {
        Window {
            not_before_ms: 0,
            not_after_ms: i64::MAX,
            assignment_ends_ms: None,
        }
    }

    fn eda(values: &[f64]) -> RecordBatch {
        let ts = (0..values.len() as i64).map(|i| T0 + i * 250).collect();
        batch(Signal::Eda, ts, values.to_vec())
    }

    #[test]
    fn clean_eda_has_no_flags() {
        let b = eda(&[2.0; 16]);
        let f = validate(Signal::Eda, &b, Some(4.0), open_window(), None);
        assert!(f.values().iter().all(|f| *f == 0), "{f:?}");
    }

    #[test]
    fn eda_zero_after_power_on_and_jumps_are_flagged_not_dropped() {
        let mut v = vec![2.0; 16];
        v[0] = 0.0; // the E4 reports 0 µS right after power-on
        v[8] = 6.0; // +4 µS in 250 ms = 16 µS/s
        let f = validate(Signal::Eda, &eda(&v), Some(4.0), open_window(), None);
        assert_eq!(f.len(), 16);
        assert_eq!(f.value(0), OUT_OF_RANGE);
        assert_eq!(f.value(8), EDA_SLOPE);
        assert_eq!(f.value(9), EDA_SLOPE, "the fall back is as steep");
        assert_eq!(f.values().iter().filter(|f| **f != 0).count(), 3);
    }

    #[test]
    fn timestamps_before_assignment_in_the_future_or_backwards_are_flagged() {
        let ts = vec![T0, T0 + 1000, T0 + 500, T0 + 2000, T0 + 9000];
        let b = batch(Signal::Hr, ts, vec![60.0; 5]);
        let w = Window {
            not_before_ms: T0 + 1,
            not_after_ms: T0 + 5000,
            assignment_ends_ms: None,
        };
        let f = validate(Signal::Hr, &b, None, w, None);
        assert_eq!(
            f.values().to_vec(),
            vec![BEFORE_ASSIGNMENT, 0, NOT_MONOTONIC, 0, IN_FUTURE]
        );
    }

    #[test]
    fn timestamps_from_the_end_of_the_assignment_on_are_flagged() {
        let ts = vec![T0, T0 + 999, T0 + 1000, T0 + 2000];
        let b = batch(Signal::Hr, ts, vec![60.0; 4]);
        let w = Window {
            assignment_ends_ms: Some(T0 + 1000),
            ..open_window()
        };
        let f = validate(Signal::Hr, &b, None, w, None);
        assert_eq!(
            f.values().to_vec(),
            vec![0, 0, AFTER_ASSIGNMENT, AFTER_ASSIGNMENT]
        );
    }

    #[test]
    fn a_signal_sampled_at_another_rate_than_declared_is_flagged() {
        // Declared 4 Hz, delivered at 1 Hz.
        let ts = (0..20).map(|i| T0 + i * 1000).collect();
        let b = batch(Signal::Eda, ts, vec![2.0; 20]);
        let f = validate(Signal::Eda, &b, Some(4.0), open_window(), None);
        assert!(f.values().iter().all(|f| *f == RATE_MISMATCH));
        // 64 Hz with millisecond rounding is fine.
        let ts = (0..640).map(|i| T0 + i * 1000 / 64).collect();
        let b = batch(Signal::Bvp, ts, vec![1.0; 640]);
        let f = validate(Signal::Bvp, &b, Some(64.0), open_window(), None);
        assert!(f.values().iter().all(|f| *f == 0));
    }

    #[test]
    fn unknown_device_events_are_flagged() {
        let b = RecordBatch::try_new(
            Signal::Event.schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![T0, T0 + 1]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec!["strap-open", "party-mode"])),
            ],
        )
        .unwrap();
        let f = validate(Signal::Event, &b, None, open_window(), None);
        assert_eq!(f.values().to_vec(), vec![0, OUT_OF_RANGE]);
        let mut counts = FlagCounts::default();
        counts.add(&f);
        assert_eq!(counts.flagged, 1);
        assert_eq!(counts.to_json(), r#"{"out-of-range":1}"#);
    }

    #[test]
    fn eda_on_skin_outside_30_to_40_degrees_is_flagged() {
        // 4 Hz EDA for 10 s; skin temperature at 1 Hz: warm, then 28 °C from 5 s on (the band
        // came off), and no temperature at all after 7 s.
        let b = eda(&[2.0; 40]);
        let ts: Vec<i64> = (0..8).map(|i| T0 + i * 1000).collect();
        let c = vec![33.0, 33.5, 34.0, 33.8, 33.0, 28.0, 28.0, 27.5];
        let temp = batch(Signal::Temp, ts, c);
        let f = validate(Signal::Eda, &b, Some(4.0), open_window(), Some(&temp))
            .values()
            .to_vec();
        let flagged: Vec<usize> = (0..40).filter(|i| f[*i] == EDA_SKIN_TEMP).collect();
        // Samples nearest to 5 s and later (ties go to the earlier, warm sample at 4.5 s).
        assert_eq!(flagged.first(), Some(&19), "{f:?}");
        // 7 s + 5 s covers the rest of this bundle: every later sample is flagged too.
        assert_eq!(flagged.len(), 21, "{f:?}");
        assert!(f[..19].iter().all(|f| *f == 0));

        // Too far from any temperature sample: no evidence, no flag.
        let far = batch(Signal::Temp, vec![T0 + 60_000], vec![20.0]);
        let g = validate(Signal::Eda, &b, Some(4.0), open_window(), Some(&far));
        assert!(g.values().iter().all(|f| *f == 0));
    }

    #[test]
    fn every_range_names_a_real_float_column() {
        for (signal, column, lo, hi) in PHYSICAL_RANGES {
            let schema = signal.schema();
            let field = schema.field_with_name(column).unwrap();
            assert_eq!(field.data_type(), &arrow::datatypes::DataType::Float64);
            assert!(lo < hi);
        }
    }
}
