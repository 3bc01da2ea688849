//! A built-in simulator of both wearables, for demos and tests.
//!
//! * Ankle monitor: one reading every 30 minutes (TAC, ambient alcohol, skin temperature, IR, strap),
//!   with drinking episodes shaped like real ones: a rise of about 0.015 g/dL per hour to the peak and
//!   a roughly linear elimination of about 0.012 g/dL per hour.
//! * Wristband: EDA 4 Hz, BVP 64 Hz, HR 1 Hz, temperature 4 Hz, ACC 32 Hz, for a few worn hours a day.
//!
//! Deterministic for a given seed, so tests can rely on what it produces.

use std::f64::consts::PI;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, TimestampMillisecondArray};
use nachtwacht_wire::{DeviceKind, Signal, SignalBatch};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::BundleContent;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Ankle monitors sample every 30 minutes.
pub const ANKLE_INTERVAL_MS: i64 = 30 * 60 * 1000;
/// Absorption and elimination rates of the simulated drinking curve (g/dL per hour).
const RISE_PER_HOUR: f64 = 0.015;
const ELIMINATION_PER_HOUR: f64 = 0.012;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    pub device: DeviceKind,
    pub device_serial: String,
    /// First simulated day, as milliseconds since the epoch (midnight UTC is typical).
    pub start_ms: i64,
    pub days: u32,
    #[serde(default)]
    pub seed: u64,
    /// Drinking episodes (ankle monitor only).
    #[serde(default)]
    pub drinking: Vec<DrinkingEpisode>,
    /// Hours the wristband is worn each day, from 10:00 (wristband only).
    #[serde(default = "default_wear_hours")]
    pub wear_hours_per_day: u32,
    /// Minutes of wristband readings per bundle (a divisor of 60; wristband only). A live station
    /// seals every few minutes; an hour per bundle keeps test data small.
    #[serde(default = "default_bundle_minutes")]
    pub bundle_minutes: u32,
}

fn default_wear_hours() -> u32 {
    2
}

fn default_bundle_minutes() -> u32 {
    60
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrinkingEpisode {
    /// Day index from `start_ms`.
    pub day: u32,
    /// Hour of the day when drinking starts.
    pub hour: f64,
    /// Peak transdermal alcohol concentration, g/dL.
    pub peak_tac: f64,
}

impl DrinkingEpisode {
    /// TAC contributed by this episode at `t_ms`.
    pub fn tac_at(&self, start_ms: i64, t_ms: i64) -> f64 {
        let onset = start_ms + self.day as i64 * DAY_MS + (self.hour * HOUR_MS as f64) as i64;
        let hours = (t_ms - onset) as f64 / HOUR_MS as f64;
        if hours <= 0.0 {
            return 0.0;
        }
        let rise_hours = self.peak_tac / RISE_PER_HOUR;
        if hours <= rise_hours {
            hours * RISE_PER_HOUR
        } else {
            (self.peak_tac - (hours - rise_hours) * ELIMINATION_PER_HOUR).max(0.0)
        }
    }
}

/// Generates one bundle per simulated day (ankle monitor) or per `bundle_minutes` of wear
/// (wristband).
pub fn generate(cfg: &SimulatorConfig) -> Vec<BundleContent> {
    generate_lazily(cfg).collect()
}

/// The same bundles, one at a time, so a station holds only the bundle it is sealing.
pub fn generate_lazily(cfg: &SimulatorConfig) -> Box<dyn Iterator<Item = BundleContent> + '_> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    match cfg.device {
        DeviceKind::AnkleMonitor => {
            Box::new((0..cfg.days).map(move |day| ankle_day(cfg, day, &mut rng)))
        }
        DeviceKind::Wristband => {
            let minutes = cfg.bundle_minutes.clamp(1, 60) as i64;
            let per_hour = 60 / minutes;
            Box::new(
                (0..cfg.days)
                    .flat_map(move |day| (0..cfg.wear_hours_per_day).map(move |h| (day, h)))
                    .flat_map(move |(day, hour)| (0..per_hour).map(move |k| (day, hour, k)))
                    .map(move |(day, hour, k)| {
                        let from = cfg.start_ms
                            + day as i64 * DAY_MS
                            + (10 + hour as i64) * HOUR_MS
                            + k * minutes * 60_000;
                        wristband_chunk(cfg, from, minutes * 60, &mut rng)
                    }),
            )
        }
    }
}

/// The simulated device's state as the station would read it over Bluetooth: connected, with a
/// battery that drains over the simulated days.
pub fn device_status(
    cfg: &SimulatorConfig,
    cursor_ms: Option<i64>,
) -> nachtwacht_wire::protocol::DeviceStatus {
    let elapsed_days = cursor_ms.map_or(0, |c| (c - cfg.start_ms).max(0) / DAY_MS);
    nachtwacht_wire::protocol::DeviceStatus {
        serial: cfg.device_serial.clone(),
        connected: true,
        battery_percent: Some((100 - (elapsed_days * 7) % 100) as u8),
        last_reading_ms: cursor_ms,
    }
}

fn ankle_day(cfg: &SimulatorConfig, day: u32, rng: &mut StdRng) -> BundleContent {
    let day_start = cfg.start_ms + day as i64 * DAY_MS;
    let ts: Vec<i64> = (0..DAY_MS / ANKLE_INTERVAL_MS)
        .map(|i| day_start + i * ANKLE_INTERVAL_MS)
        .collect();
    let tac: Vec<f64> = ts
        .iter()
        .map(|&t| {
            let drink: f64 = cfg.drinking.iter().map(|d| d.tac_at(cfg.start_ms, t)).sum();
            // Sensor noise around zero is small and never negative.
            (drink + rng.gen_range(0.0..0.003)).max(0.0)
        })
        .collect();
    let n = ts.len();
    let ambient: Vec<f64> = (0..n).map(|_| rng.gen_range(0.0..0.001)).collect();
    let skin: Vec<f64> = (0..n).map(|_| 33.0 + rng.gen_range(-0.6..0.6)).collect();
    let ir: Vec<f64> = (0..n).map(|_| 1.0 + rng.gen_range(-0.02..0.02)).collect();
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
        Arc::new(Float64Array::from(tac)),
        Arc::new(Float64Array::from(ambient)),
        Arc::new(Float64Array::from(skin)),
        Arc::new(Float64Array::from(ir)),
        Arc::new(BooleanArray::from(vec![true; n])),
    ];
    BundleContent {
        device_serial: cfg.device_serial.clone(),
        device_kind: DeviceKind::AnkleMonitor,
        batches: vec![SignalBatch::nominal(
            Signal::Ankle,
            RecordBatch::try_new(Signal::Ankle.schema(), arrays).expect("ankle schema"),
        )],
    }
}

fn wristband_chunk(
    cfg: &SimulatorConfig,
    from_ms: i64,
    seconds: i64,
    rng: &mut StdRng,
) -> BundleContent {
    let series = |rate_hz: u32| -> Vec<i64> {
        (0..seconds * rate_hz as i64)
            .map(|i| from_ms + i * 1000 / rate_hz as i64)
            .collect()
    };
    let hr_base = 68.0 + rng.gen_range(-4.0..4.0);
    let tonic = 2.0 + rng.gen_range(-0.5..0.5);

    let eda_ts = series(4);
    let eda: Vec<f64> = eda_ts
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let t = i as f64 / 4.0;
            // Tonic level with a slow drift, plus a skin-conductance response every ~45 s.
            let phase = t % 45.0;
            let scr = if phase < 8.0 {
                0.08 * (-(phase - 2.0).powi(2) / 4.0).exp()
            } else {
                0.0
            };
            tonic + 0.2 * (2.0 * PI * t / 1800.0).sin() + scr + rng.gen_range(-0.005..0.005)
        })
        .collect();
    let hr_ts = series(1);
    let hr: Vec<f64> = hr_ts
        .iter()
        .map(|_| hr_base + rng.gen_range(-3.0..3.0))
        .collect();
    let bvp_ts = series(64);
    let bvp: Vec<f64> = (0..bvp_ts.len())
        .map(|i| {
            let t = i as f64 / 64.0;
            40.0 * (2.0 * PI * t * hr_base / 60.0).sin() + rng.gen_range(-2.0..2.0)
        })
        .collect();
    let temp_ts = series(4);
    let temp: Vec<f64> = temp_ts
        .iter()
        .map(|_| 33.5 + rng.gen_range(-0.1..0.1))
        .collect();
    let acc_ts = series(32);
    let n_acc = acc_ts.len();
    let mut axis = |mean: f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            (0..n_acc).map(|_| mean + rng.gen_range(-0.03..0.03)),
        ))
    };
    let (x, y, z) = (axis(0.0), axis(0.0), axis(1.0));

    let one = |signal: Signal, ts: Vec<i64>, values: Vec<ArrayRef>| -> SignalBatch {
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(
            TimestampMillisecondArray::from(ts).with_timezone("UTC"),
        )];
        arrays.extend(values);
        SignalBatch::nominal(
            signal,
            RecordBatch::try_new(signal.schema(), arrays).expect("wristband schema"),
        )
    };
    BundleContent {
        device_serial: cfg.device_serial.clone(),
        device_kind: DeviceKind::Wristband,
        batches: vec![
            one(Signal::Eda, eda_ts, vec![Arc::new(Float64Array::from(eda))]),
            one(Signal::Bvp, bvp_ts, vec![Arc::new(Float64Array::from(bvp))]),
            one(Signal::Hr, hr_ts, vec![Arc::new(Float64Array::from(hr))]),
            one(
                Signal::Temp,
                temp_ts,
                vec![Arc::new(Float64Array::from(temp))],
            ),
            one(Signal::Acc, acc_ts, vec![x, y, z]),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ankle(drinking: Vec<DrinkingEpisode>) -> SimulatorConfig {
        SimulatorConfig {
            device: DeviceKind::AnkleMonitor,
            device_serial: "AM-1".into(),
            start_ms: 1_700_006_400_000,
            days: 2,
            seed: 1,
            drinking,
            wear_hours_per_day: 0,
            bundle_minutes: 60,
        }
    }

    fn tac_column(b: &BundleContent) -> Vec<f64> {
        let col = b.batches[0].batch.column(1);
        col.as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    #[test]
    fn ankle_monitor_reads_every_30_minutes_for_each_day() {
        let bundles = generate(&ankle(vec![]));
        assert_eq!(bundles.len(), 2);
        assert!(bundles.iter().all(|b| b.batches[0].batch.num_rows() == 48));
        assert!(bundles.iter().flat_map(tac_column).all(|v| v < 0.02));
    }

    #[test]
    fn a_drinking_episode_reaches_its_peak_and_falls_back() {
        let bundles = generate(&ankle(vec![DrinkingEpisode {
            day: 1,
            hour: 18.0,
            peak_tac: 0.06,
        }]));
        let day2 = tac_column(&bundles[1]);
        let peak = day2.iter().cloned().fold(0.0, f64::max);
        assert!((0.055..0.07).contains(&peak), "peak {peak}");
        assert!(tac_column(&bundles[0]).iter().all(|&v| v < 0.02));
        // Rising 0.015/h: 4 h to the peak; the readings above 0.02 span several hours.
        assert!(day2.iter().filter(|&&v| v > 0.02).count() >= 6);
    }

    #[test]
    fn wristband_has_every_signal_at_its_rate() {
        let cfg = SimulatorConfig {
            device: DeviceKind::Wristband,
            wear_hours_per_day: 1,
            days: 1,
            ..ankle(vec![])
        };
        let bundles = generate(&cfg);
        assert_eq!(bundles.len(), 1);
        let five_minutes = generate(&SimulatorConfig {
            bundle_minutes: 5,
            ..cfg.clone()
        });
        assert_eq!(five_minutes.len(), 12);
        assert_eq!(five_minutes[0].batches[1].batch.num_rows(), 19_200);
        assert_eq!(
            five_minutes[11].span().unwrap().1,
            bundles[0].span().unwrap().1
        );
        let rows: Vec<(Signal, usize)> = bundles[0]
            .batches
            .iter()
            .map(|b| (b.signal, b.batch.num_rows()))
            .collect();
        assert_eq!(
            rows,
            vec![
                (Signal::Eda, 14_400),
                (Signal::Bvp, 230_400),
                (Signal::Hr, 3_600),
                (Signal::Temp, 14_400),
                (Signal::Acc, 115_200)
            ]
        );
    }
}
