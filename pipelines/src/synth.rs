//! Synthetic signals with known ground truth, for measuring the pipelines' accuracy
//! (docs/validation.md) and for benchmarks. Deterministic: the same seed gives the same frames.
//!
//! Pure like the rest of this crate: frames in memory, no files. The shapes follow
//! ../shared/domain.md: an ankle reading every 30 minutes with TAC curves that rise and eliminate at
//! drinking's pace (and interferent spikes that do not); a wristband with 4 Hz EDA made of a tonic
//! level plus skin-conductance responses, 1 Hz heart rate and a 3-axis accelerometer.

use polars::prelude::*;

/// SplitMix64: small, fast and good enough for test signals; no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn utc(lf: LazyFrame) -> LazyFrame {
    lf.with_column(col("ts").cast(DataType::Datetime(
        TimeUnit::Milliseconds,
        Some(TimeZone::UTC),
    )))
}

const MS_PER_MINUTE: i64 = 60_000;
const HALF_HOUR_MS: i64 = 30 * MS_PER_MINUTE;

/// A stretch of time, minutes from the recording's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub start_min: f64,
    pub minutes: f64,
}

impl Span {
    pub fn new(start_min: f64, minutes: f64) -> Self {
        Self { start_min, minutes }
    }

    fn contains_s(&self, t_s: f64) -> bool {
        let m = t_s / 60.0;
        m >= self.start_min && m < self.start_min + self.minutes
    }

    /// Start and end as epoch milliseconds, for a recording starting at `t0_ms`.
    pub fn bounds_ms(&self, t0_ms: i64) -> (i64, i64) {
        (
            t0_ms + (self.start_min * 60_000.0) as i64,
            t0_ms + ((self.start_min + self.minutes) * 60_000.0) as i64,
        )
    }
}

/// A wristband recording of one person with what really happened in it.
#[derive(Debug, Clone)]
pub struct Wristband {
    pub pid: String,
    /// Epoch ms of the first sample.
    pub t0_ms: i64,
    /// Recording segments (the band is worn); outside them there are no samples at all.
    pub worn: Vec<Span>,
    /// Stress at rest: SCR bursts, a higher tonic level and heart rate, no motion.
    pub stress: Vec<Span>,
    /// Exercise: heart rate and sweating up, with motion. Must not be called stress.
    pub exercise: Vec<Span>,
    /// EDA artefacts: the electrode loses contact (0 µS) for a few seconds.
    pub dropouts: Vec<Span>,
    /// Accelerometer rate (the E4 records 32 Hz; the stress pipeline only needs window means).
    pub acc_hz: f64,
    pub seed: u64,
}

/// Frames in the pipelines' input contract (see [`crate::stress`]).
pub struct WristbandFrames {
    /// `pid`, `ts`, `eda_us`, `quality`.
    pub eda: LazyFrame,
    /// `pid`, `ts`, `hr_bpm`.
    pub hr: LazyFrame,
    /// `pid`, `ts`, `x_g`, `y_g`, `z_g`.
    pub acc: LazyFrame,
    /// Samples in all three (ACC counts three per row).
    pub samples: usize,
}

impl Wristband {
    fn worn_at(&self, t_s: f64) -> bool {
        self.worn.iter().any(|s| s.contains_s(t_s))
    }

    fn in_any(spans: &[Span], t_s: f64) -> bool {
        spans.iter().any(|s| s.contains_s(t_s))
    }

    fn end_s(&self) -> f64 {
        self.worn
            .iter()
            .map(|s| (s.start_min + s.minutes) * 60.0)
            .fold(0.0, f64::max)
    }

    pub fn frames(&self) -> PolarsResult<WristbandFrames> {
        let mut rng = Rng::new(self.seed);
        let end_s = self.end_s();

        // SCR onsets: Poisson, 1.5 per minute at rest, 9 during stress or exercise.
        let mut onsets: Vec<(f64, f64)> = Vec::new();
        let mut t = 0.0;
        while t < end_s {
            let aroused = Self::in_any(&self.stress, t) || Self::in_any(&self.exercise, t);
            let per_minute = if aroused { 9.0 } else { 1.5 };
            t += -(1.0 - rng.unit()).ln() * 60.0 / per_minute;
            let amplitude = if aroused {
                rng.uniform(0.08, 0.3)
            } else {
                rng.uniform(0.03, 0.12)
            };
            onsets.push((t, amplitude));
        }

        // EDA at 4 Hz: tonic + responses (rise ~1 s, decay ~3 s) + noise.
        let eda_n = (end_s * 4.0) as usize;
        let mut eda = vec![0.0; eda_n];
        for (i, v) in eda.iter_mut().enumerate() {
            let t = i as f64 / 4.0;
            let mut tonic = 2.0 + 0.3 * (2.0 * std::f64::consts::PI * t / 3600.0).sin();
            if Self::in_any(&self.stress, t) {
                tonic += 0.4;
            }
            if Self::in_any(&self.exercise, t) {
                tonic += 0.8;
            }
            *v = tonic + 0.002 * rng.normal();
        }
        for (onset, amplitude) in &onsets {
            let first = (onset * 4.0).ceil() as usize;
            for (i, v) in eda.iter_mut().enumerate().skip(first).take(80) {
                let tau = i as f64 / 4.0 - onset;
                // Normalised so the peak is `amplitude`.
                *v += amplitude * 2.12 * ((-tau / 3.0).exp() - (-tau / 0.75).exp());
            }
        }
        let (mut e_ts, mut e_v, mut e_q) = (Vec::new(), Vec::new(), Vec::new());
        for (i, v) in eda.into_iter().enumerate() {
            let t = i as f64 / 4.0;
            if !self.worn_at(t) {
                continue;
            }
            e_ts.push(self.t0_ms + (t * 1000.0) as i64);
            let dropout = Self::in_any(&self.dropouts, t);
            e_v.push(if dropout { 0.0 } else { v });
            // The decoder flags 0 µS as out of range (bit 16).
            e_q.push(if dropout { 16u16 } else { 0 });
        }

        // Heart rate at 1 Hz.
        let (mut h_ts, mut h_v) = (Vec::new(), Vec::new());
        let mut s = 0.0;
        while s < end_s {
            if self.worn_at(s) {
                let mut hr = 66.0 + 3.0 * (2.0 * std::f64::consts::PI * s / 5400.0).sin();
                if Self::in_any(&self.stress, s) {
                    hr += 20.0;
                }
                if Self::in_any(&self.exercise, s) {
                    hr += 55.0;
                }
                h_ts.push(self.t0_ms + (s * 1000.0) as i64);
                h_v.push(hr + 2.0 * rng.normal());
            }
            s += 1.0;
        }

        // Accelerometer: gravity on z plus noise at rest, a 2.5 Hz stride when exercising.
        let (mut a_ts, mut ax, mut ay, mut az) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let step = 1.0 / self.acc_hz;
        let mut s = 0.0;
        while s < end_s {
            if self.worn_at(s) {
                let stride = if Self::in_any(&self.exercise, s) {
                    0.8 * (2.0 * std::f64::consts::PI * 2.5 * s).sin()
                } else {
                    0.0
                };
                a_ts.push(self.t0_ms + (s * 1000.0) as i64);
                ax.push(0.02 * rng.normal());
                ay.push(0.02 * rng.normal());
                az.push(1.0 + stride + 0.02 * rng.normal());
            }
            s += step;
        }
        let samples = e_ts.len() + h_ts.len() + 3 * a_ts.len();
        let pid = self.pid.as_str();
        Ok(WristbandFrames {
            eda: utc(df!(
                "pid" => vec![pid; e_ts.len()],
                "ts" => e_ts,
                "eda_us" => e_v,
                "quality" => e_q,
            )?
            .lazy()),
            hr: utc(df!(
                "pid" => vec![pid; h_ts.len()],
                "ts" => h_ts,
                "hr_bpm" => h_v,
            )?
            .lazy()),
            acc: utc(df!(
                "pid" => vec![pid; a_ts.len()],
                "ts" => a_ts,
                "x_g" => ax,
                "y_g" => ay,
                "z_g" => az,
            )?
            .lazy()),
            samples,
        })
    }
}

/// What really happened on an ankle monitor.
#[derive(Debug, Clone, PartialEq)]
pub enum AnkleTruth {
    /// A drinking occasion of `drinks` standard drinks, starting at the given reading.
    Drinking { first_reading: usize, drinks: u32 },
    /// A perfume or hand-gel spike on one reading.
    Interferent { reading: usize },
    /// The IR path blocked (strap closed, skin warm) for `readings` readings.
    Obstruction {
        first_reading: usize,
        readings: usize,
    },
    /// The monitor taken off (cold, IR changed) for `readings` readings.
    Removal {
        first_reading: usize,
        readings: usize,
    },
}

/// Peak TAC of a drinking occasion, g/dL: 0.012 per standard drink, a round figure inside the
/// published range for transdermal peaks (TAC peaks are lower and later than breath alcohol).
pub fn peak_tac(drinks: u32) -> f64 {
    0.012 * f64::from(drinks)
}

/// An ankle recording of one person: a reading every 30 minutes, with the events in `truth`.
#[derive(Debug, Clone)]
pub struct Ankle {
    pub pid: String,
    pub t0_ms: i64,
    pub readings: usize,
    pub truth: Vec<AnkleTruth>,
    pub seed: u64,
}

impl Ankle {
    /// Rise and elimination rates used for drinking curves, g/dL per hour: inside the rules' limits
    /// (0.05 and 0.025), as real drinking is.
    pub const RISE_PER_HOUR: f64 = 0.03;
    pub const ELIMINATION_PER_HOUR: f64 = 0.015;

    /// Epoch ms of reading `i`.
    pub fn ts_of(&self, i: usize) -> i64 {
        self.t0_ms + i as i64 * HALF_HOUR_MS
    }

    /// `pid`, `ts`, `tac_g_dl`, `ambient_g_dl`, `skin_temp_c`, `ir`, `strap_closed`, `bundle_id`
    /// (a bundle per 8 readings, i.e. per four hours).
    pub fn frame(&self) -> PolarsResult<LazyFrame> {
        let mut rng = Rng::new(self.seed);
        let n = self.readings;
        let mut tac = vec![0.0f64; n];
        let mut skin = vec![0.0f64; n];
        let mut ir = vec![1.0f64; n];
        for i in 0..n {
            skin[i] = 33.0 + 0.3 * rng.normal();
            ir[i] = 1.0 + 0.03 * rng.normal();
            tac[i] = (0.002 * rng.normal()).abs();
        }
        for event in &self.truth {
            match *event {
                AnkleTruth::Drinking {
                    first_reading,
                    drinks,
                } => {
                    let peak = peak_tac(drinks);
                    let rise_h = peak / Self::RISE_PER_HOUR;
                    let fall_h = peak / Self::ELIMINATION_PER_HOUR;
                    for (i, v) in tac.iter_mut().enumerate().skip(first_reading) {
                        let h = (i - first_reading) as f64 * 0.5;
                        let curve = if h <= rise_h {
                            Self::RISE_PER_HOUR * h
                        } else {
                            (peak - Self::ELIMINATION_PER_HOUR * (h - rise_h)).max(0.0)
                        };
                        if h > rise_h + fall_h {
                            break;
                        }
                        *v = v.max(curve);
                    }
                }
                AnkleTruth::Interferent { reading } => {
                    if let Some(v) = tac.get_mut(reading) {
                        *v = 0.06;
                    }
                }
                AnkleTruth::Obstruction {
                    first_reading,
                    readings,
                } => {
                    for v in ir.iter_mut().skip(first_reading).take(readings) {
                        *v = 0.3;
                    }
                }
                AnkleTruth::Removal {
                    first_reading,
                    readings,
                } => {
                    for i in first_reading..(first_reading + readings).min(n) {
                        ir[i] = 0.2;
                        skin[i] = 22.0 + 0.5 * rng.normal();
                        tac[i] = 0.0;
                    }
                }
            }
        }
        let pid = self.pid.as_str();
        Ok(utc(df!(
            "pid" => vec![pid; n],
            "ts" => (0..n).map(|i| self.ts_of(i)).collect::<Vec<_>>(),
            "tac_g_dl" => tac,
            "ambient_g_dl" => vec![0.0; n],
            "skin_temp_c" => skin,
            "ir" => ir,
            "strap_closed" => vec![true; n],
            "bundle_id" => (0..n).map(|i| format!("{pid}-b{}", i / 8)).collect::<Vec<_>>(),
        )?
        .lazy()))
    }
}
