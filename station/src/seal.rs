//! Turns one [`BundleContent`] into a sealed bundle: the v1 plaintext (manifest plus Arrow IPC
//! streams), signed with the station's Ed25519 key (`nachtwacht_wire::signed`), encrypted with age
//! to the server's recipient. Only the server can open it, and it can tell who signed it.

use std::str::FromStr;

use nachtwacht_wire::bundle::{encode_bundle, BundleManifest};
use nachtwacht_wire::signed::{encode_signed, signing_digest, SIGNATURE_LEN};
use nachtwacht_wire::BundleId;
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

use crate::source::BundleContent;
use crate::{Error, Result};

/// A bundle ready for the spool: its id and its age ciphertext.
#[derive(Debug, Clone)]
pub struct SealedBundle {
    pub bundle_id: BundleId,
    pub ciphertext: Vec<u8>,
}

pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(s.trim())
        .map_err(|e| Error::Config(format!("server age recipient {s:?}: {e}")))
}

/// Creates a new Ed25519 signing key: (PKCS#8 hex for the station, public key hex for the server).
pub fn new_signing_key() -> Result<(String, String)> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|e| Error::Seal(format!("generating a signing key: {e}")))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| Error::Seal(format!("signing key: {e}")))?;
    Ok((
        hex::encode(pkcs8.as_ref()),
        hex::encode(pair.public_key().as_ref()),
    ))
}

/// The identity a bundle is sealed under: the station's name and signing key.
pub struct Signer<'a> {
    pub station: &'a str,
    pub key: &'a Ed25519KeyPair,
}

pub fn seal(
    content: &BundleContent,
    signer: &Signer<'_>,
    recipient: &age::x25519::Recipient,
) -> Result<SealedBundle> {
    let bundle_id = content_id(content);
    let manifest = BundleManifest {
        bundle_id,
        device_serial: content.device_serial.clone(),
        device_kind: content.device_kind,
        sealed_at_ms: chrono::Utc::now().timestamp_millis(),
        signals: vec![],
    };
    let plaintext =
        encode_bundle(manifest, &content.batches).map_err(|e| Error::Seal(e.to_string()))?;
    let signature: [u8; SIGNATURE_LEN] = signer
        .key
        .sign(&signing_digest(signer.station, &plaintext))
        .as_ref()
        .try_into()
        .expect("Ed25519 signatures are 64 bytes");
    let signed = encode_signed(signer.station, &plaintext, &signature);
    drop(plaintext);
    let ciphertext = age::encrypt(recipient, &signed).map_err(|e| Error::Seal(e.to_string()))?;
    Ok(SealedBundle {
        bundle_id,
        ciphertext,
    })
}

/// The bundle id is derived from what the bundle holds (device, time span, row counts), so sealing
/// the same readings again after a crash yields the same id and the server stores them once.
pub fn content_id(content: &BundleContent) -> BundleId {
    let mut h = Sha256::new();
    h.update(b"nachtwacht bundle id v1\0");
    h.update(content.device_serial.as_bytes());
    h.update([0]);
    let (from, to) = content.span().unwrap_or((0, 0));
    h.update(from.to_le_bytes());
    h.update(to.to_le_bytes());
    for b in &content.batches {
        h.update(b.signal.name().as_bytes());
        h.update((b.batch.num_rows() as u64).to_le_bytes());
    }
    let digest = h.finalize();
    BundleId(digest[..16].try_into().expect("16 bytes"))
}
