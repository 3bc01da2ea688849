//! Evidence the system produces about itself, for an auditor and a data-protection officer:
//! the compliance report ([`compliance`]: BIO controls, each judged by code from the data
//! directory) and the data inventory for the DPIA ([`inventory`]: every table, dataset and file
//! class with its columns, categories, purpose, legal basis, retention and readers). The court
//! dossier of one alert lives with the alerts (`alerts::dossier`).
//!
//! It reads every stage and the lifecycle, so it sits above them; the web and the CLI show it.

pub mod compliance;
pub mod inventory;
