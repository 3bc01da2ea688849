//! The data's lifecycle after it is stored: what a person may ask to see (the subject access
//! export, [`export`]). Reads every stage's data; no stage imports it.

pub mod export;
