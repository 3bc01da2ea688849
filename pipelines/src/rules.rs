//! Rule parameters. The defaults are the TOML files in `pipelines/`, compiled in; an operator's copy
//! can be parsed with the same function (the server reads the file, this crate only parses text).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The shipped defaults, from `pipelines/alcohol.toml`.
pub const ALCOHOL_DEFAULTS: &str = include_str!("../alcohol.toml");
/// The shipped defaults, from `pipelines/tamper.toml`.
pub const TAMPER_DEFAULTS: &str = include_str!("../tamper.toml");
/// The shipped defaults, from `pipelines/stress.toml`.
pub const STRESS_DEFAULTS: &str = include_str!("../stress.toml");

/// Parses a rules file, then lets `problems` list everything wrong with the values: all of it is
/// reported at once, so an operator fixes a file in one go.
fn parse_checked<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    problems: impl FnOnce(&T) -> Vec<String>,
) -> Result<T> {
    let rules: T = toml::from_str(text).map_err(|e| Error::Rules {
        file: file.into(),
        reason: e.to_string(),
    })?;
    let problems = problems(&rules);
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(Error::Rules {
            file: file.into(),
            reason: problems.join("; "),
        })
    }
}

/// Tamper, battery and device-fault rules (see `pipelines/tamper.toml` for each field's meaning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TamperRules {
    pub ir_baseline_readings: u32,
    pub ir_deviation_fraction: f64,
    pub obstruction_min_hours: f64,
    pub removal_max_skin_temp_c: f64,
    pub battery_low_pct: f64,
    pub fault_events: Vec<String>,
}

impl TamperRules {
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        parse_checked(text, file, Self::problems)
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.ir_baseline_readings == 0 {
            problems.push("ir_baseline_readings must be at least 1".to_string());
        }
        if !(self.ir_deviation_fraction > 0.0 && self.ir_deviation_fraction < 1.0) {
            problems.push(format!(
                "ir_deviation_fraction {} is outside (0, 1)",
                self.ir_deviation_fraction
            ));
        }
        if self.obstruction_min_hours <= 0.0 {
            problems.push("obstruction_min_hours must be positive".to_string());
        }
        if !(0.0..=100.0).contains(&self.battery_low_pct) {
            problems.push(format!(
                "battery_low_pct {} is outside 0..=100",
                self.battery_low_pct
            ));
        }
        problems
    }
}

impl Default for TamperRules {
    fn default() -> Self {
        Self::parse(TAMPER_DEFAULTS, "pipelines/tamper.toml").expect("shipped defaults are valid")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlcoholRules {
    pub threshold_g_dl: f64,
    pub min_consecutive_readings: u32,
    pub max_rise_per_hour: f64,
    pub max_elimination_per_hour: f64,
    pub noise_allowance_g_dl: f64,
    pub noise_allowance_percent: u32,
    pub ambient_exposure_g_dl: f64,
    pub max_reading_gap_minutes: u32,
    pub pending_hours: u32,
    pub minutes_per_reading: u32,
    pub min_worn_skin_temp_c: f64,
}

/// µg/dL in one g/dL.
pub const UG_PER_G: f64 = 1_000_000.0;
const MS_PER_MINUTE: i64 = 60_000;

/// A level in g/dL as whole µg/dL, if it is one (to within floating-point representation).
fn whole_ug(g_dl: f64) -> Option<i64> {
    let ug = g_dl * UG_PER_G;
    let rounded = ug.round();
    ((ug - rounded).abs() < 1e-6 && rounded.is_finite()).then_some(rounded as i64)
}

/// The alcohol rules in the integers they are applied in: µg/dL, µg/dL per hour and milliseconds.
/// Every comparison at a limit is exact, so the configured limit is the applied one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlcoholLimits {
    pub threshold_ug: i64,
    pub min_consecutive_readings: u32,
    pub max_rise_ug_per_hour: i64,
    pub max_fall_ug_per_hour: i64,
    pub noise_allowance_ug: i64,
    pub noise_allowance_percent: i64,
    pub ambient_exposure_ug: i64,
    pub max_reading_gap_ms: i64,
    pub pending_ms: i64,
}

impl AlcoholRules {
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        parse_checked(text, file, Self::problems)
    }

    /// The rules as applied. Valid rules (all that [`Self::parse`] accepts) always convert.
    pub fn limits(&self) -> AlcoholLimits {
        let ug = |v: f64| whole_ug(v).unwrap_or((v * UG_PER_G).round() as i64);
        AlcoholLimits {
            threshold_ug: ug(self.threshold_g_dl),
            min_consecutive_readings: self.min_consecutive_readings,
            max_rise_ug_per_hour: ug(self.max_rise_per_hour),
            max_fall_ug_per_hour: ug(self.max_elimination_per_hour),
            noise_allowance_ug: ug(self.noise_allowance_g_dl),
            noise_allowance_percent: i64::from(self.noise_allowance_percent),
            ambient_exposure_ug: ug(self.ambient_exposure_g_dl),
            max_reading_gap_ms: i64::from(self.max_reading_gap_minutes) * MS_PER_MINUTE,
            pending_ms: i64::from(self.pending_hours) * 60 * MS_PER_MINUTE,
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.threshold_g_dl > 0.0 && self.threshold_g_dl < 0.5) {
            problems.push(format!(
                "threshold_g_dl {} is outside (0, 0.5)",
                self.threshold_g_dl
            ));
        }
        if self.min_consecutive_readings == 0 {
            problems.push("min_consecutive_readings must be at least 1".to_string());
        }
        if self.max_rise_per_hour <= 0.0 || self.max_elimination_per_hour <= 0.0 {
            problems.push("rise and elimination limits must be positive".to_string());
        }
        for (name, v) in [
            ("threshold_g_dl", self.threshold_g_dl),
            ("max_rise_per_hour", self.max_rise_per_hour),
            ("max_elimination_per_hour", self.max_elimination_per_hour),
            ("noise_allowance_g_dl", self.noise_allowance_g_dl),
            ("ambient_exposure_g_dl", self.ambient_exposure_g_dl),
        ] {
            if !(0.0..1.0).contains(&v) || whole_ug(v).is_none() {
                problems.push(format!(
                    "{name} {v} must be a whole number of µg/dL (6 decimals of g/dL) in [0, 1)"
                ));
            }
        }
        if self.ambient_exposure_g_dl <= 0.0 {
            problems.push("ambient_exposure_g_dl must be positive".to_string());
        }
        if self.noise_allowance_percent > 100 {
            problems.push("noise_allowance_percent must be at most 100".to_string());
        }
        if self.minutes_per_reading == 0 {
            problems.push("minutes_per_reading must be positive".to_string());
        }
        if self.max_reading_gap_minutes < self.minutes_per_reading {
            problems
                .push("max_reading_gap_minutes must be at least minutes_per_reading".to_string());
        }
        if self.pending_hours == 0 {
            problems.push("pending_hours must be at least 1".to_string());
        }
        problems
    }
}

impl Default for AlcoholRules {
    fn default() -> Self {
        Self::parse(ALCOHOL_DEFAULTS, "pipelines/alcohol.toml").expect("shipped defaults are valid")
    }
}

/// Stress-indicator rules (see `pipelines/stress.toml` for each field's meaning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StressRules {
    pub eda_min_us: f64,
    pub eda_max_us: f64,
    pub invalid_margin_s: f64,
    pub eda_rate_hz: f64,
    pub smoothing_s: f64,
    pub tonic_window_s: f64,
    pub scr_min_amplitude_us: f64,
    pub scr_max_rise_s: f64,
    pub window_minutes: u32,
    pub min_valid_fraction: f64,
    pub rest_max_activity_g: f64,
    pub baseline_days: u32,
    pub hour_band_hours: u32,
    pub baseline_min_windows: u32,
    pub baseline_spread_factor: f64,
    pub merge_gap_minutes: f64,
    pub min_episode_minutes: f64,
}

impl StressRules {
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        parse_checked(text, file, Self::problems)
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.eda_min_us >= 0.0 && self.eda_min_us < self.eda_max_us) {
            problems.push(format!(
                "EDA range {}..{} µS is empty",
                self.eda_min_us, self.eda_max_us
            ));
        }
        for (name, value) in [
            ("invalid_margin_s", self.invalid_margin_s),
            ("eda_rate_hz", self.eda_rate_hz),
            ("smoothing_s", self.smoothing_s),
            ("tonic_window_s", self.tonic_window_s),
            ("scr_min_amplitude_us", self.scr_min_amplitude_us),
            ("scr_max_rise_s", self.scr_max_rise_s),
            ("rest_max_activity_g", self.rest_max_activity_g),
            ("merge_gap_minutes", self.merge_gap_minutes),
            ("min_episode_minutes", self.min_episode_minutes),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                problems.push(format!("{name} must be positive, not {value}"));
            }
        }
        if self.window_minutes == 0 || 60 % self.window_minutes != 0 {
            problems.push(format!(
                "window_minutes {} must divide an hour",
                self.window_minutes
            ));
        }
        if self.hour_band_hours == 0 || 24 % self.hour_band_hours != 0 {
            problems.push(format!(
                "hour_band_hours {} must divide a day",
                self.hour_band_hours
            ));
        }
        if self.baseline_days == 0 {
            problems.push("baseline_days must be at least 1".to_string());
        }
        if !(0.0..=1.0).contains(&self.min_valid_fraction) {
            problems.push(format!(
                "min_valid_fraction {} is outside 0..=1",
                self.min_valid_fraction
            ));
        }
        if self.smoothing_s >= self.tonic_window_s {
            problems.push("smoothing_s must be shorter than tonic_window_s".to_string());
        }
        problems
    }
}

impl Default for StressRules {
    fn default() -> Self {
        Self::parse(STRESS_DEFAULTS, "pipelines/stress.toml").expect("shipped defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_defaults_match_the_domain_notes() {
        let r = AlcoholRules::default();
        assert_eq!(r.threshold_g_dl, 0.02);
        assert_eq!(r.min_consecutive_readings, 3);
        assert_eq!(r.max_rise_per_hour, 0.05);
        assert_eq!(r.max_elimination_per_hour, 0.025);
        let l = r.limits();
        assert_eq!(l.threshold_ug, 20_000);
        assert_eq!(l.max_rise_ug_per_hour, 50_000);
        assert_eq!(l.max_fall_ug_per_hour, 25_000);
        assert_eq!(l.max_reading_gap_ms, 90 * 60_000);
    }

    #[test]
    fn a_level_finer_than_one_microgram_is_refused() {
        let bad = ALCOHOL_DEFAULTS.replace("threshold_g_dl = 0.02", "threshold_g_dl = 0.0200005");
        let err = AlcoholRules::parse(&bad, "a.toml").unwrap_err().to_string();
        assert!(err.contains("whole number of µg/dL"), "{err}");
        // Values that are whole µg/dL but not exact in binary floating point convert exactly.
        let fine = ALCOHOL_DEFAULTS.replace(
            "max_elimination_per_hour = 0.025",
            "max_elimination_per_hour = 0.000007",
        );
        let r = AlcoholRules::parse(&fine, "a.toml").unwrap();
        assert_eq!(r.limits().max_fall_ug_per_hour, 7);
    }

    #[test]
    fn shipped_tamper_defaults_match_the_domain_notes() {
        let r = TamperRules::default();
        assert_eq!(r.obstruction_min_hours, 2.0);
        assert_eq!(r.removal_max_skin_temp_c, 28.0);
        assert!(r.fault_events.iter().any(|e| e == "self-test-fail"));
        let bad =
            TAMPER_DEFAULTS.replace("ir_deviation_fraction = 0.3", "ir_deviation_fraction = 2");
        let err = TamperRules::parse(&bad, "t.toml").unwrap_err().to_string();
        assert!(err.contains("ir_deviation_fraction"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = ALCOHOL_DEFAULTS
            .replace("threshold_g_dl = 0.02", "threshold_g_dl = 0.0")
            .replace(
                "min_consecutive_readings = 3",
                "min_consecutive_readings = 0",
            );
        let err = AlcoholRules::parse(&text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("threshold_g_dl") && err.contains("min_consecutive"),
            "{err}"
        );
        assert!(AlcoholRules::parse("bogus = 1", "x.toml").is_err());
    }

    #[test]
    fn shipped_stress_defaults_match_the_domain_notes() {
        let r = StressRules::default();
        assert_eq!((r.eda_min_us, r.eda_max_us), (0.05, 60.0));
        assert_eq!(r.invalid_margin_s, 5.0);
        assert_eq!(r.window_minutes, 2);
        assert_eq!(r.baseline_days, 7);
        assert_eq!(r.baseline_spread_factor, 1.5);
        assert_eq!((r.merge_gap_minutes, r.min_episode_minutes), (10.0, 10.0));
        let bad = STRESS_DEFAULTS
            .replace("window_minutes = 2", "window_minutes = 7")
            .replace("hour_band_hours = 6", "hour_band_hours = 5");
        let err = StressRules::parse(&bad, "stress.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("window_minutes 7") && err.contains("hour_band_hours 5"),
            "{err}"
        );
    }
}
