//! The signed envelope: what the station encrypts with age.
//!
//! ```text
//! "NWSIGNED" | u8 version (1) | u16 LE station name length | station name
//!            | u64 LE bundle length | bundle (see [`crate::bundle`]) | Ed25519 signature (64 bytes)
//! ```
//!
//! The signature is made with the station's Ed25519 key (created at enrollment; the server holds the
//! public key) over [`signing_digest`]: SHA-256 of a domain-separation string, the station name and
//! the bundle bytes. The server verifies it after decryption, against the key of the station whose
//! certificate uploaded the bundle, so a bundle in evidence can be shown to come from that station
//! unaltered. Signing and verifying are done by the callers (ring); this module only frames bytes.

use sha2::{Digest, Sha256};

pub const SIGNED_MAGIC: &[u8; 8] = b"NWSIGNED";
pub const SIGNED_VERSION: u8 = 1;
pub const SIGNATURE_LEN: usize = 64;
const DOMAIN: &[u8] = b"nachtwacht bundle signature v1\0";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignedError {
    #[error("not a signed bundle (bad magic)")]
    BadMagic,
    #[error("signed-envelope version {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("signed envelope truncated")]
    Truncated,
    #[error("signed envelope has trailing bytes")]
    TrailingBytes,
    #[error("station name is not UTF-8")]
    BadStationName,
}

/// What the station signs.
pub fn signing_digest(station: &str, bundle: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update((station.len() as u64).to_le_bytes());
    h.update(station.as_bytes());
    h.update(bundle);
    h.finalize().into()
}

pub fn encode_signed(station: &str, bundle: &[u8], signature: &[u8; SIGNATURE_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 1 + 2 + station.len() + 8 + bundle.len() + SIGNATURE_LEN);
    out.extend_from_slice(SIGNED_MAGIC);
    out.push(SIGNED_VERSION);
    out.extend_from_slice(&(station.len() as u16).to_le_bytes());
    out.extend_from_slice(station.as_bytes());
    out.extend_from_slice(&(bundle.len() as u64).to_le_bytes());
    out.extend_from_slice(bundle);
    out.extend_from_slice(signature);
    out
}

/// A decoded envelope; the signature is not yet checked.
#[derive(Debug, PartialEq, Eq)]
pub struct SignedBundle<'a> {
    pub station: &'a str,
    pub bundle: &'a [u8],
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedBundle<'_> {
    pub fn digest(&self) -> [u8; 32] {
        signing_digest(self.station, self.bundle)
    }
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], SignedError> {
    if bytes.len() < n {
        return Err(SignedError::Truncated);
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

pub fn decode_signed(mut bytes: &[u8]) -> Result<SignedBundle<'_>, SignedError> {
    if take(&mut bytes, 8)? != SIGNED_MAGIC {
        return Err(SignedError::BadMagic);
    }
    let version = take(&mut bytes, 1)?[0];
    if version != SIGNED_VERSION {
        return Err(SignedError::UnsupportedVersion(version));
    }
    let name_len = u16::from_le_bytes(take(&mut bytes, 2)?.try_into().expect("2 bytes")) as usize;
    let station = std::str::from_utf8(take(&mut bytes, name_len)?)
        .map_err(|_| SignedError::BadStationName)?;
    let bundle_len = u64::from_le_bytes(take(&mut bytes, 8)?.try_into().expect("8 bytes"));
    let bundle_len = usize::try_from(bundle_len).map_err(|_| SignedError::Truncated)?;
    let bundle = take(&mut bytes, bundle_len)?;
    let signature: [u8; SIGNATURE_LEN] = take(&mut bytes, SIGNATURE_LEN)?.try_into().expect("64");
    if !bytes.is_empty() {
        return Err(SignedError::TrailingBytes);
    }
    Ok(SignedBundle {
        station,
        bundle,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_refuse_damage() {
        let sig = [7u8; 64];
        let bytes = encode_signed("home-1", b"bundle bytes", &sig);
        let decoded = decode_signed(&bytes).unwrap();
        assert_eq!(decoded.station, "home-1");
        assert_eq!(decoded.bundle, b"bundle bytes");
        assert_eq!(decoded.signature, sig);
        assert_eq!(decoded.digest(), signing_digest("home-1", b"bundle bytes"));
        assert_ne!(signing_digest("home-2", b"bundle bytes"), decoded.digest());

        assert_eq!(
            decode_signed(&bytes[..bytes.len() - 1]),
            Err(SignedError::Truncated)
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(decode_signed(&trailing), Err(SignedError::TrailingBytes));
        assert_eq!(decode_signed(b"NWBUNDLE..."), Err(SignedError::BadMagic));
    }
}
