//! Rule parameters. The defaults are the TOML files in `pipelines/`, compiled in; an operator's copy
//! can be parsed with the same function (the server reads the file, this crate only parses text).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The shipped defaults, from `pipelines/alcohol.toml`.
pub const ALCOHOL_DEFAULTS: &str = include_str!("../alcohol.toml");
/// The shipped defaults, from `pipelines/tamper.toml`.
pub const TAMPER_DEFAULTS: &str = include_str!("../tamper.toml");

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
    pub minutes_per_reading: u32,
    pub min_worn_skin_temp_c: f64,
}

impl AlcoholRules {
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        parse_checked(text, file, Self::problems)
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
        if self.minutes_per_reading == 0 {
            problems.push("minutes_per_reading must be positive".to_string());
        }
        problems
    }
}

impl Default for AlcoholRules {
    fn default() -> Self {
        Self::parse(ALCOHOL_DEFAULTS, "pipelines/alcohol.toml").expect("shipped defaults are valid")
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
}
