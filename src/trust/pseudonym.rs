//! Keyed pseudonyms: HMAC-SHA256 over the person's internal id, one key per domain.
//!
//! The operational pseudonym (`pid`) keys raw datasets and lets the server map an alert back to a
//! person; the research pseudonym (`rid`) keys the research dataset. Without the keys neither can be
//! linked to a person, nor to each other. The key version is part of the pseudonym so a rotated key
//! never produces a pseudonym that collides with an old one.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::trust::secrets::PseudonymKeys;

#[derive(Clone)]
pub struct Pseudonymiser {
    version: u32,
    operational: Vec<u8>,
    research: Vec<u8>,
}

impl Pseudonymiser {
    pub fn new(keys: &PseudonymKeys) -> Self {
        Self {
            version: keys.version,
            operational: hex::decode(&keys.operational).expect("validated on load"),
            research: hex::decode(&keys.research).expect("validated on load"),
        }
    }

    /// The pseudonymiser of a data directory, from its current pseudonym keys.
    pub fn load(dir: &crate::base::datadir::DataDir) -> Result<Self, crate::trust::secrets::Error> {
        Ok(Self::new(&PseudonymKeys::load(&dir.pseudonym_keys())?))
    }

    fn derive(&self, key: &[u8], prefix: &str, person_id: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(b"nachtwacht person\0");
        mac.update(&person_id.to_le_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{prefix}{}-{}", self.version, hex::encode(&tag[..12]))
    }

    /// Operational pseudonym, e.g. `p1-…`.
    pub fn operational(&self, person_id: i64) -> String {
        self.derive(&self.operational, "p", person_id)
    }

    /// Research pseudonym, e.g. `r1-…`.
    pub fn research(&self, person_id: i64) -> String {
        self.derive(&self.research, "r", person_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_unlinkable_across_domains() {
        let keys = PseudonymKeys::generate();
        let p = Pseudonymiser::new(&keys);
        assert_eq!(p.operational(7), p.operational(7));
        assert_ne!(p.operational(7), p.operational(8));
        assert_ne!(p.operational(7)[3..], p.research(7)[3..]);
        let other = Pseudonymiser::new(&PseudonymKeys::generate());
        assert_ne!(p.operational(7), other.operational(7));
        assert!(p.research(7).starts_with("r1-"));
    }
}
