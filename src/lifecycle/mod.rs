//! The data's lifecycle after it is stored: the end of a supervision ([`supervision`]), the
//! retention policy ([`policy`]), legal holds ([`hold`]), erasure of what is past its time
//! ([`retention`]), and what a person may ask to see or a case file hands over ([`export`]).
//! Reads and erases every stage's data; no stage imports it, except that evaluation leaves alone
//! the persons whose erasure has begun.

pub mod export;
pub mod hold;
pub mod policy;
pub mod retention;
#[cfg(test)]
mod retention_props;
pub mod supervision;
