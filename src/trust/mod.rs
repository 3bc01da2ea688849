//! The trust layer: who may connect and what can be verified later. The certificate authority and
//! its revocation list, secrets on disk, the age keys and their rotation, the keys of TLS session tickets, keyed pseudonyms, and the
//! hash-chained audit log. Stands on [`crate::base`] only.

pub mod audit;
pub mod crl;
pub mod keys;
pub mod pki;
pub mod pseudonym;
pub mod secrets;
pub mod tickets;
