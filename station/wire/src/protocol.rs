//! Upload protocol v1, one bundle per bidirectional QUIC stream.
//!
//! ```text
//! station → server: "NWUP" | u8 protocol version | u32 LE header length | header (JSON)
//!                   | ciphertext (exactly header.size bytes) | end of stream
//! server → station: u32 LE ack length | ack (JSON) | end of stream
//! ```
//!
//! The server acknowledges `stored` only once the ciphertext and its directory entry are on disk
//! (fsync), `duplicate` when it already holds that bundle id durably, `rejected` with a reason for
//! input it will never accept, and `busy` with a retry delay when it cannot take the bundle now.
//! [`station_action`] is the station's whole decision table for an acknowledgement.
//!
//! Pure: no sockets, no clock. The transports on both sides only move these bytes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundle::BundleId;

pub const UPLOAD_MAGIC: &[u8; 4] = b"NWUP";
pub const PROTOCOL_VERSION: u8 = 1;
/// ALPN identifier negotiated in the TLS handshake; a peer speaking anything else is refused.
pub const ALPN: &[u8] = b"nachtwacht/1";
pub const MAX_HEADER_LEN: usize = 4096;
pub const MAX_ACK_LEN: usize = 4096;
/// Fixed prefix: magic, version, header length.
pub const REQUEST_PREFIX_LEN: usize = 4 + 1 + 4;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("not an upload stream (bad magic)")]
    BadMagic,
    #[error(
        "protocol version {0} is not supported (this build speaks version {PROTOCOL_VERSION})"
    )]
    UnsupportedVersion(u8),
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("ciphertext is {actual} bytes, header announced {announced}")]
    SizeMismatch { announced: u64, actual: u64 },
    #[error("ciphertext digest does not match the header")]
    DigestMismatch,
}

pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

/// Sent before the ciphertext of one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadHeader {
    pub bundle_id: BundleId,
    /// Per-station counter, increasing by one for every bundle the station seals.
    pub sequence: u64,
    /// Ciphertext length in bytes.
    pub size: u64,
    /// SHA-256 of the ciphertext, hex.
    pub sha256: String,
}

impl UploadHeader {
    pub fn for_ciphertext(bundle_id: BundleId, sequence: u64, ciphertext: &[u8]) -> Self {
        Self {
            bundle_id,
            sequence,
            size: ciphertext.len() as u64,
            sha256: sha256_hex(ciphertext),
        }
    }

    /// Checks that a received ciphertext is the one this header announced.
    pub fn verify(&self, ciphertext: &[u8]) -> Result<()> {
        if ciphertext.len() as u64 != self.size {
            return Err(ProtocolError::SizeMismatch {
                announced: self.size,
                actual: ciphertext.len() as u64,
            });
        }
        if sha256_hex(ciphertext) != self.sha256 {
            return Err(ProtocolError::DigestMismatch);
        }
        Ok(())
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckCode {
    Stored,
    Duplicate,
    Rejected,
    Busy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub bundle_id: Option<BundleId>,
    pub code: AckCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The server's clock when it acknowledged, so stations can estimate their clock offset.
    pub server_time_ms: i64,
}

/// What a station does with its local copy after an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StationAction {
    /// The server holds the bundle durably: delete the local copy.
    Delete,
    /// Keep the copy and try again after this many milliseconds.
    RetryAfter(u64),
    /// The server will never accept it: move it aside with the reason, for an operator.
    SetAside(String),
}

pub fn station_action(ack: &Ack) -> StationAction {
    match ack.code {
        AckCode::Stored | AckCode::Duplicate => StationAction::Delete,
        AckCode::Busy => StationAction::RetryAfter(ack.retry_after_ms.unwrap_or(1_000)),
        AckCode::Rejected => StationAction::SetAside(
            ack.reason
                .clone()
                .unwrap_or_else(|| "rejected without reason".into()),
        ),
    }
}

/// Encodes what precedes the ciphertext on an upload stream.
pub fn encode_request_head(header: &UploadHeader) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("header serialises");
    let mut out = Vec::with_capacity(REQUEST_PREFIX_LEN + json.len());
    out.extend_from_slice(UPLOAD_MAGIC);
    out.push(PROTOCOL_VERSION);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// Reads the fixed prefix and returns the header length still to read.
pub fn decode_request_prefix(prefix: &[u8; REQUEST_PREFIX_LEN]) -> Result<usize> {
    if &prefix[..4] != UPLOAD_MAGIC {
        return Err(ProtocolError::BadMagic);
    }
    if prefix[4] != PROTOCOL_VERSION {
        return Err(ProtocolError::UnsupportedVersion(prefix[4]));
    }
    let len = u32::from_le_bytes(prefix[5..9].try_into().expect("4 bytes")) as usize;
    if len > MAX_HEADER_LEN {
        return Err(ProtocolError::TooLarge {
            len,
            max: MAX_HEADER_LEN,
        });
    }
    Ok(len)
}

/// Parses the header and checks the announced size against the receiver's limit.
pub fn decode_request_header(bytes: &[u8], max_bundle_size: u64) -> Result<UploadHeader> {
    let header: UploadHeader =
        serde_json::from_slice(bytes).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if header.size > max_bundle_size {
        return Err(ProtocolError::TooLarge {
            len: header.size as usize,
            max: max_bundle_size as usize,
        });
    }
    if header.sha256.len() != 64 || !header.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ProtocolError::Malformed(
            "sha256 must be 64 hex digits".into(),
        ));
    }
    Ok(header)
}

pub fn encode_ack(ack: &Ack) -> Vec<u8> {
    let json = serde_json::to_vec(ack).expect("ack serialises");
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// Decodes a complete acknowledgement frame (length prefix included).
pub fn decode_ack(bytes: &[u8]) -> Result<Ack> {
    let len_bytes: [u8; 4] = bytes
        .get(..4)
        .ok_or_else(|| ProtocolError::Malformed("ack shorter than its length prefix".into()))?
        .try_into()
        .expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_ACK_LEN {
        return Err(ProtocolError::TooLarge {
            len,
            max: MAX_ACK_LEN,
        });
    }
    let body = bytes
        .get(4..4 + len)
        .ok_or_else(|| ProtocolError::Malformed("ack truncated".into()))?;
    serde_json::from_slice(body).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests;
