//! Evidence the system produces about itself, for a court, an auditor and a data-protection
//! officer: the court evidence dossier of one alert ([`dossier`]: signed, checked offline), the
//! compliance report ([`compliance`]: BIO controls, each judged by code from the data directory)
//! and the data inventory for the DPIA ([`inventory`]: every table, dataset and file class with
//! its columns, categories, purpose, legal basis, retention and readers).
//!
//! It reads every stage and the lifecycle, so it sits above them; the web and the CLI show it.

pub mod compliance;
pub mod dossier;
pub mod inventory;
