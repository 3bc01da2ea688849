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
    /// A drinking occasion of `drinks` standard drinks, the first taken during the given reading's
    /// half hour. Some occasions are split into two bouts hours apart (decided by the seed).
    Drinking { first_reading: usize, drinks: u32 },
    /// A short exposure (perfume, hand gel on the leg): TAC jumps within one reading and
    /// evaporates within the next hour.
    Interferent { reading: usize },
    /// A sustained exposure (solvents at work, disinfecting): TAC held up for `readings` readings
    /// (1.5–3 h) while ambient alcohol is raised, falling back within an hour after.
    Exposure {
        first_reading: usize,
        readings: usize,
    },
    /// The IR path blocked (strap closed, skin warm) for `readings` readings.
    Obstruction {
        first_reading: usize,
        readings: usize,
    },
    /// The monitor taken off (skin cooling, IR changed) for `readings` readings.
    Removal {
        first_reading: usize,
        readings: usize,
    },
}

/// Peak TAC of a drinking occasion as a round figure, g/dL: 0.012 per standard drink. The
/// simulated curves ([`Ankle::simulate`]) have their own peaks; this is the nominal dose scale.
pub fn peak_tac(drinks: u32) -> f64 {
    0.012 * f64::from(drinks)
}

/// Measurement noise of the TAC sensor: `sd_g_dl + proportional × TAC` standard deviation, AR(1)
/// correlated from one reading to the next with coefficient `correlation`, readings quantised to
/// 0.001 g/dL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    pub sd_g_dl: f64,
    pub proportional: f64,
    pub correlation: f64,
}

impl Noise {
    /// The noise estimated for the sensor: a few thousandths of a g/dL per reading.
    pub const ESTIMATED: Noise = Noise {
        sd_g_dl: 0.002,
        proportional: 0.02,
        correlation: 0.5,
    };

    /// The same shape of noise, `factor` times as large.
    pub fn scaled(self, factor: f64) -> Noise {
        Noise {
            sd_g_dl: self.sd_g_dl * factor,
            proportional: self.proportional * factor,
            ..self
        }
    }
}

/// One true event of a simulated recording, as the scoring needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthEvent {
    pub truth: AnkleTruth,
    /// From the first drink or the exposure's start to the noiseless curve's return below
    /// 0.005 g/dL, epoch ms.
    pub start_ms: i64,
    pub end_ms: i64,
    /// The noiseless curve's peak TAC, g/dL (0 for tamper events).
    pub peak_g_dl: f64,
}

/// An ankle recording of one person: a reading every 30 minutes, with the events in `truth`.
#[derive(Debug, Clone)]
pub struct Ankle {
    pub pid: String,
    pub t0_ms: i64,
    pub readings: usize,
    pub truth: Vec<AnkleTruth>,
    pub noise: Noise,
    pub seed: u64,
}

/// Per-person physiology of a drinking occasion (drawn from the seed).
struct Physiology {
    /// BAC added by one standard drink once absorbed, g/dL.
    bac_per_drink: f64,
    /// First-order absorption from the gut, per hour.
    absorption_per_hour: f64,
    /// Maximum elimination rate (Michaelis–Menten), g/dL per hour; slows near zero (the tail).
    elimination_per_hour: f64,
    /// Skin delay: first-order time constant from blood to the sweat the sensor reads, hours.
    skin_delay_h: f64,
    /// TAC per BAC at equilibrium (transdermal peaks are lower than blood peaks).
    skin_gain: f64,
}

const MICHAELIS_G_DL: f64 = 0.005;
const STEP_MIN: f64 = 1.0;

impl Ankle {
    /// Epoch ms of reading `i`.
    pub fn ts_of(&self, i: usize) -> i64 {
        self.t0_ms + i as i64 * HALF_HOUR_MS
    }

    /// `pid`, `ts`, `tac_g_dl`, `ambient_g_dl`, `skin_temp_c`, `ir`, `strap_closed`, `bundle_id`
    /// (a bundle per 8 readings, i.e. per four hours).
    pub fn frame(&self) -> PolarsResult<LazyFrame> {
        Ok(self.simulate()?.0)
    }

    /// The readings and, per event of `truth`, when it really happened and its true peak.
    ///
    /// Drinking follows a two-compartment shape: drinks absorbed from the gut into the blood
    /// (first order), eliminated at a near-constant rate that slows near zero (Michaelis–Menten,
    /// the slow tail), and seen by the skin sensor through a first-order delay of 45–90 minutes.
    /// Exposures raise ambient alcohol while they last. On removal the skin cools gradually.
    pub fn simulate(&self) -> PolarsResult<(LazyFrame, Vec<TruthEvent>)> {
        let mut rng = Rng::new(self.seed);
        let n = self.readings;
        let minutes = n as f64 * 30.0;
        let steps = minutes as usize + 1;
        // Noiseless TAC per minute, the sum of every event's curve.
        let mut clean = vec![0.0f64; steps];
        let mut ambient = vec![0.0f64; n];
        let mut skin = vec![0.0f64; n];
        let mut ir = vec![1.0f64; n];
        for i in 0..n {
            skin[i] = 33.0 + 0.3 * rng.normal();
            ir[i] = 1.0 + 0.03 * rng.normal();
            ambient[i] = rng.uniform(0.0, 0.002);
        }
        let mut events = Vec::new();
        for event in &self.truth {
            let start_min = |reading: usize| reading as f64 * 30.0;
            match *event {
                AnkleTruth::Drinking {
                    first_reading,
                    drinks,
                } => {
                    let p = Physiology {
                        bac_per_drink: 0.02 * rng.uniform(0.8, 1.2),
                        absorption_per_hour: rng.uniform(2.0, 4.0),
                        elimination_per_hour: rng.uniform(0.012, 0.02),
                        skin_delay_h: rng.uniform(0.75, 1.5),
                        skin_gain: rng.uniform(0.7, 1.0),
                    };
                    let first = start_min(first_reading) + rng.uniform(0.0, 30.0);
                    let mut times = Vec::new();
                    let two_bouts = drinks >= 2 && rng.unit() < 0.3;
                    let first_bout = if two_bouts {
                        drinks.div_ceil(2)
                    } else {
                        drinks
                    };
                    let mut t = first;
                    for k in 0..drinks {
                        if k == first_bout {
                            t += rng.uniform(120.0, 240.0);
                        }
                        times.push(t);
                        t += rng.uniform(15.0, 35.0);
                    }
                    let curve = drinking_curve(&p, &times, steps);
                    let (peak, end) = peak_and_end(&curve, first);
                    for (c, v) in clean.iter_mut().zip(&curve) {
                        *c += v;
                    }
                    events.push(self.truth_event(event, first, end, peak));
                }
                AnkleTruth::Interferent { reading } => {
                    let at = start_min(reading) - rng.uniform(1.0, 25.0);
                    let height = rng.uniform(0.04, 0.1);
                    let curve = exposure_curve(at, 1.0, height, steps);
                    let (peak, end) = peak_and_end(&curve, at);
                    for (c, v) in clean.iter_mut().zip(&curve) {
                        *c += v;
                    }
                    // Product on the skin: the air near the sensor carries it only sometimes.
                    if rng.unit() < 0.5 {
                        if let Some(a) = ambient.get_mut(reading) {
                            *a = rng.uniform(0.01, 0.04);
                        }
                    }
                    events.push(self.truth_event(event, at, end, peak));
                }
                AnkleTruth::Exposure {
                    first_reading,
                    readings,
                } => {
                    let at = start_min(first_reading) - rng.uniform(1.0, 25.0);
                    let lasting = readings as f64 * 30.0;
                    let height = rng.uniform(0.03, 0.08);
                    let curve = exposure_curve(at, lasting, height, steps);
                    let (peak, end) = peak_and_end(&curve, at);
                    for (c, v) in clean.iter_mut().zip(&curve) {
                        *c += v;
                    }
                    let air = rng.uniform(0.015, 0.06);
                    for (i, a) in ambient.iter_mut().enumerate() {
                        let m = start_min(i);
                        if m >= at && m <= at + lasting {
                            *a = air * rng.uniform(0.7, 1.3);
                        }
                    }
                    events.push(self.truth_event(event, at, end, peak));
                }
                AnkleTruth::Obstruction {
                    first_reading,
                    readings,
                } => {
                    for v in ir.iter_mut().skip(first_reading).take(readings) {
                        *v = 0.3;
                    }
                    let (from, to) = (
                        start_min(first_reading),
                        start_min(first_reading + readings - 1),
                    );
                    events.push(self.truth_event(event, from, to, 0.0));
                }
                AnkleTruth::Removal {
                    first_reading,
                    readings,
                } => {
                    // Taken off some minutes before the first reading; the skin sensor cools to
                    // the room with a time constant of about ten minutes.
                    let off = start_min(first_reading) - rng.uniform(5.0, 25.0);
                    for i in first_reading..(first_reading + readings).min(n) {
                        let since = start_min(i) - off;
                        ir[i] = 0.2;
                        skin[i] = 22.0 + 11.0 * (-since / 10.0).exp() + 0.3 * rng.normal();
                    }
                    let to = start_min(first_reading + readings - 1);
                    events.push(self.truth_event(event, off, to, 0.0));
                }
            }
        }
        // Readings: the noiseless curve at each half hour plus correlated, proportional noise,
        // quantised to 0.001 g/dL like the device's output.
        let mut tac = vec![0.0f64; n];
        let mut e = rng.normal();
        let phi = self.noise.correlation;
        for (i, v) in tac.iter_mut().enumerate() {
            e = phi * e + (1.0 - phi * phi).sqrt() * rng.normal();
            let c = clean[(i * 30).min(steps - 1)];
            let sd = self.noise.sd_g_dl + self.noise.proportional * c;
            *v = quantise((c + sd * e).max(0.0));
        }
        for a in ambient.iter_mut() {
            *a = quantise(*a);
        }
        // Off the leg the alcohol sensor reads the room.
        for event in &self.truth {
            if let AnkleTruth::Removal {
                first_reading,
                readings,
            } = *event
            {
                let off = first_reading.min(n)..(first_reading + readings).min(n);
                tac[off.clone()].copy_from_slice(&ambient[off]);
            }
        }
        let pid = self.pid.as_str();
        let lf = utc(df!(
            "pid" => vec![pid; n],
            "ts" => (0..n).map(|i| self.ts_of(i)).collect::<Vec<_>>(),
            "tac_g_dl" => tac,
            "ambient_g_dl" => ambient,
            "skin_temp_c" => skin,
            "ir" => ir,
            "strap_closed" => vec![true; n],
            "bundle_id" => (0..n).map(|i| format!("{pid}-b{}", i / 8)).collect::<Vec<_>>(),
        )?
        .lazy());
        Ok((lf, events))
    }

    fn truth_event(&self, truth: &AnkleTruth, from_min: f64, to_min: f64, peak: f64) -> TruthEvent {
        let ms = |m: f64| self.t0_ms + (m * MS_PER_MINUTE as f64) as i64;
        TruthEvent {
            truth: truth.clone(),
            start_ms: ms(from_min),
            end_ms: ms(to_min),
            peak_g_dl: peak,
        }
    }
}

fn quantise(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// TAC per minute of one drinking occasion with drinks at `times` (minutes).
fn drinking_curve(p: &Physiology, times: &[f64], steps: usize) -> Vec<f64> {
    let dt_h = STEP_MIN / 60.0;
    let (mut gut, mut blood, mut skin) = (0.0f64, 0.0f64, 0.0f64);
    let mut next = 0;
    let mut out = vec![0.0; steps];
    for (m, v) in out.iter_mut().enumerate() {
        while next < times.len() && times[next] <= m as f64 {
            gut += p.bac_per_drink;
            next += 1;
        }
        let absorbed = gut * p.absorption_per_hour * dt_h;
        gut -= absorbed;
        let eliminated = p.elimination_per_hour * blood / (MICHAELIS_G_DL + blood) * dt_h;
        blood = (blood + absorbed - eliminated).max(0.0);
        skin += (p.skin_gain * blood - skin) * dt_h / p.skin_delay_h;
        *v = skin;
    }
    out
}

/// TAC per minute of an exposure from minute `at` lasting `minutes`: the skin takes up alcohol
/// within about a quarter of an hour and loses it by evaporation within the hour after.
fn exposure_curve(at: f64, minutes: f64, height: f64, steps: usize) -> Vec<f64> {
    let mut out = vec![0.0; steps];
    let mut v = 0.0f64;
    for (m, o) in out.iter_mut().enumerate() {
        let m = m as f64;
        if m >= at && m < at + minutes.max(1.0) {
            v += (height - v) * (STEP_MIN / 8.0).min(1.0);
            if minutes <= 1.0 {
                v = height;
            }
        } else {
            v -= v * STEP_MIN / 15.0;
        }
        *o = v;
    }
    out
}

/// The curve's peak, and the minute after `from` from which it stays below 0.005 g/dL (a second
/// bout after a dip belongs to the same occasion).
fn peak_and_end(curve: &[f64], from: f64) -> (f64, f64) {
    let peak = curve.iter().copied().fold(0.0f64, f64::max);
    let end = curve
        .iter()
        .rposition(|&v| v >= 0.005)
        .map_or(from, |m| m as f64 + 1.0);
    (peak, end.max(from))
}
