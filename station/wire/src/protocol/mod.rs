//! Upload protocol, version 1: one request per bidirectional QUIC stream.
//!
//! ```text
//! station → server: "NWUP" | u8 version | u8 kind | u32 LE header length | header (JSON)
//!                   | body (exactly the length the header announces) | end of stream
//! server → station: u32 LE ack length | ack (JSON) | end of stream
//! ```
//!
//! Kinds: `1` upload (header [`UploadHeader`], body = the bundle's age ciphertext) and `2` heartbeat
//! (header [`Heartbeat`], empty body). The version is negotiated in the TLS handshake through ALPN
//! (`nachtwacht/<version>`, see [`alpn_ids`]); every stream repeats it so a stray stream from another
//! version is refused instead of misread.
//!
//! The server acknowledges `stored` only once the ciphertext and its directory entry are on disk and
//! the bundle is registered, `duplicate` when it already holds that bundle id durably, `rejected`
//! with a reason for input it will never accept, and `busy` with a retry delay when it cannot take
//! the bundle now (backpressure, a rate limit, or bytes that arrived damaged). [`station_action`] is
//! the station's whole decision table for an acknowledgement.
//!
//! Pure: no sockets, no clock. [`reader::RequestReader`] is the server's incremental parser,
//! [`session::UploadSession`] the station's upload scheduler; the transports only move bytes and
//! report events to them.

pub mod reader;
pub mod session;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundle::BundleId;

pub const UPLOAD_MAGIC: &[u8; 4] = b"NWUP";
/// The version this build speaks first.
pub const PROTOCOL_VERSION: u8 = 1;
/// Every version this build speaks, newest first.
pub const SUPPORTED_VERSIONS: &[u8] = &[PROTOCOL_VERSION];
pub const MAX_HEADER_LEN: usize = 4096;
pub const MAX_ACK_LEN: usize = 4096;
/// Fixed prefix: magic, version, kind, header length.
pub const REQUEST_PREFIX_LEN: usize = 4 + 1 + 1 + 4;

/// The ALPN identifier of one protocol version.
pub fn alpn_id(version: u8) -> Vec<u8> {
    format!("nachtwacht/{version}").into_bytes()
}

/// ALPN identifiers of every supported version, newest first: what a station offers and what the
/// server accepts. The server picks the first of its own list that the station also offers.
pub fn alpn_ids() -> Vec<Vec<u8>> {
    SUPPORTED_VERSIONS.iter().map(|v| alpn_id(*v)).collect()
}

/// The protocol version an ALPN identifier names, if this build speaks it.
pub fn version_from_alpn(alpn: &[u8]) -> Option<u8> {
    SUPPORTED_VERSIONS
        .iter()
        .copied()
        .find(|v| alpn_id(*v) == alpn)
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("not an upload stream (bad magic)")]
    BadMagic,
    #[error("protocol version {got} on a connection that negotiated version {negotiated}")]
    VersionMismatch { got: u8, negotiated: u8 },
    #[error("unknown request kind {0}")]
    UnknownKind(u8),
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u64, max: u64 },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("stream ended before the request header was complete")]
    HeaderTruncated,
    #[error("stream ended after {got} of {expected} body bytes")]
    Truncated { expected: u64, got: u64 },
    #[error("more bytes than the header announced ({expected})")]
    TrailingBytes { expected: u64 },
    #[error("ciphertext digest does not match the header")]
    DigestMismatch,
    #[error("header names station {claimed:?}, the certificate belongs to {actual:?}")]
    WrongStation { claimed: String, actual: String },
}

impl ProtocolError {
    /// Whether the fault can be the network's rather than the sender's: the bytes that arrived are
    /// not the bytes that were sent. Such a request is answered `busy`, so the station sends again,
    /// never `rejected`, which would set a sound bundle aside.
    pub fn is_transit_damage(&self) -> bool {
        matches!(
            self,
            ProtocolError::HeaderTruncated
                | ProtocolError::Truncated { .. }
                | ProtocolError::DigestMismatch
        )
    }
}

pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestKind {
    Upload = 1,
    Heartbeat = 2,
}

impl RequestKind {
    fn from_u8(b: u8) -> Result<Self> {
        match b {
            1 => Ok(Self::Upload),
            2 => Ok(Self::Heartbeat),
            other => Err(ProtocolError::UnknownKind(other)),
        }
    }
}

/// Sent before the ciphertext of one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadHeader {
    pub bundle_id: BundleId,
    /// The sending station's enrolled name; must match its certificate.
    pub station: String,
    /// Per-station counter, increasing by one for every bundle the station seals.
    pub sequence: u64,
    /// Ciphertext length in bytes (the body of this request). age's plaintext is never longer
    /// than its ciphertext, so this bounds what the server will decrypt as well.
    pub size: u64,
    /// SHA-256 of the ciphertext, hex.
    pub sha256: String,
}

impl UploadHeader {
    pub fn for_ciphertext(
        bundle_id: BundleId,
        station: &str,
        sequence: u64,
        ciphertext: &[u8],
    ) -> Self {
        Self {
            bundle_id,
            station: station.to_string(),
            sequence,
            size: ciphertext.len() as u64,
            sha256: sha256_hex(ciphertext),
        }
    }

    /// Checks that a received ciphertext is the one this header announced.
    pub fn verify(&self, ciphertext: &[u8]) -> Result<()> {
        self.verify_digest(ciphertext.len() as u64, &sha256_hex(ciphertext))
    }

    /// As [`Self::verify`], for a body hashed as it arrived: its length and hex SHA-256.
    pub fn verify_digest(&self, len: u64, sha256_hex: &str) -> Result<()> {
        if len != self.size {
            return Err(ProtocolError::Truncated {
                expected: self.size,
                got: len,
            });
        }
        if sha256_hex != self.sha256 {
            return Err(ProtocolError::DigestMismatch);
        }
        Ok(())
    }

    fn validate(&self, max_bundle_size: u64) -> Result<()> {
        if self.size > max_bundle_size {
            return Err(ProtocolError::TooLarge {
                len: self.size,
                max: max_bundle_size,
            });
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProtocolError::Malformed(
                "sha256 must be 64 hex digits".into(),
            ));
        }
        Ok(())
    }
}

/// A station's periodic report of its own health, sent on its own stream with an empty body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub station: String,
    /// The station's clock when it sent this.
    pub sent_at_ms: i64,
    /// Station clock minus server clock, estimated from the last acknowledgement's `server_time_ms`;
    /// `None` before the first acknowledgement.
    pub clock_offset_ms: Option<i64>,
    pub spool: SpoolStatus,
    pub devices: Vec<DeviceStatus>,
    /// A certificate signing request (PEM) for the station's next certificate, sent while its
    /// certificate nears its end; the acknowledgement carries the new certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_csr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolStatus {
    pub pending_bundles: u64,
    pub pending_bytes: u64,
    pub capacity_bytes: u64,
    /// The spool reached its cap: the station stopped taking readings off the device.
    pub full: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceStatus {
    pub serial: String,
    pub connected: bool,
    pub battery_percent: Option<u8>,
    pub last_reading_ms: Option<i64>,
}

/// What a request's header says, before its body has arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestHead {
    Upload(UploadHeader),
    Heartbeat(Heartbeat),
}

impl RequestHead {
    pub fn body_len(&self) -> u64 {
        match self {
            RequestHead::Upload(h) => h.size,
            RequestHead::Heartbeat(_) => 0,
        }
    }

    pub fn station(&self) -> &str {
        match self {
            RequestHead::Upload(h) => &h.station,
            RequestHead::Heartbeat(h) => &h.station,
        }
    }

    pub fn bundle_id(&self) -> Option<BundleId> {
        match self {
            RequestHead::Upload(h) => Some(h.bundle_id),
            RequestHead::Heartbeat(_) => None,
        }
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
    /// The age recipient the server wants new bundles sealed to (sent with `stored` and
    /// `duplicate`); a station that sees a new one switches to it (key rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The station's next certificate (PEM), answering a heartbeat's `renewal_csr`. The station
    /// stores it durably with its new key before it uses it; the server accepts the old
    /// certificate until the new one is first used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

impl Ack {
    pub fn stored(bundle_id: Option<BundleId>, server_time_ms: i64) -> Self {
        Self::new(bundle_id, AckCode::Stored, None, None, server_time_ms)
    }

    pub fn duplicate(bundle_id: BundleId, server_time_ms: i64) -> Self {
        Self::new(
            Some(bundle_id),
            AckCode::Duplicate,
            None,
            None,
            server_time_ms,
        )
    }

    pub fn rejected(bundle_id: Option<BundleId>, reason: String, server_time_ms: i64) -> Self {
        Self::new(
            bundle_id,
            AckCode::Rejected,
            Some(reason),
            None,
            server_time_ms,
        )
    }

    pub fn busy(
        bundle_id: Option<BundleId>,
        reason: String,
        retry_after_ms: u64,
        server_time_ms: i64,
    ) -> Self {
        Self::new(
            bundle_id,
            AckCode::Busy,
            Some(reason),
            Some(retry_after_ms),
            server_time_ms,
        )
    }

    fn new(
        bundle_id: Option<BundleId>,
        code: AckCode,
        reason: Option<String>,
        retry_after_ms: Option<u64>,
        server_time_ms: i64,
    ) -> Self {
        Self {
            bundle_id,
            code,
            reason,
            retry_after_ms,
            server_time_ms,
            certificate: None,
            recipient: None,
        }
    }

    /// The acknowledgement a request that failed to parse gets.
    pub fn for_protocol_error(
        bundle_id: Option<BundleId>,
        e: &ProtocolError,
        server_time_ms: i64,
    ) -> Self {
        if e.is_transit_damage() {
            Self::busy(bundle_id, e.to_string(), 1_000, server_time_ms)
        } else {
            Self::rejected(bundle_id, e.to_string(), server_time_ms)
        }
    }
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

fn encode_head(kind: RequestKind, json: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(REQUEST_PREFIX_LEN + json.len());
    out.extend_from_slice(UPLOAD_MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// Encodes what precedes the ciphertext on an upload stream.
pub fn encode_upload_head(header: &UploadHeader) -> Vec<u8> {
    encode_head(
        RequestKind::Upload,
        serde_json::to_vec(header).expect("header serialises"),
    )
}

/// Encodes a whole heartbeat request (it has no body).
pub fn encode_heartbeat(heartbeat: &Heartbeat) -> Vec<u8> {
    encode_head(
        RequestKind::Heartbeat,
        serde_json::to_vec(heartbeat).expect("heartbeat serialises"),
    )
}

/// Reads the fixed prefix: the request kind and the header length still to read.
pub fn decode_request_prefix(
    prefix: &[u8; REQUEST_PREFIX_LEN],
    negotiated: u8,
) -> Result<(RequestKind, usize)> {
    if &prefix[..4] != UPLOAD_MAGIC {
        return Err(ProtocolError::BadMagic);
    }
    if prefix[4] != negotiated {
        return Err(ProtocolError::VersionMismatch {
            got: prefix[4],
            negotiated,
        });
    }
    let kind = RequestKind::from_u8(prefix[5])?;
    let len = u32::from_le_bytes(prefix[6..10].try_into().expect("4 bytes")) as usize;
    if len > MAX_HEADER_LEN {
        return Err(ProtocolError::TooLarge {
            len: len as u64,
            max: MAX_HEADER_LEN as u64,
        });
    }
    Ok((kind, len))
}

/// Parses a header of the given kind and checks it against the receiver's limit.
pub fn decode_request_header(
    kind: RequestKind,
    bytes: &[u8],
    max_bundle_size: u64,
) -> Result<RequestHead> {
    let malformed = |e: serde_json::Error| ProtocolError::Malformed(e.to_string());
    match kind {
        RequestKind::Upload => {
            let header: UploadHeader = serde_json::from_slice(bytes).map_err(malformed)?;
            header.validate(max_bundle_size)?;
            Ok(RequestHead::Upload(header))
        }
        RequestKind::Heartbeat => Ok(RequestHead::Heartbeat(
            serde_json::from_slice(bytes).map_err(malformed)?,
        )),
    }
}

pub fn encode_ack(ack: &Ack) -> Vec<u8> {
    let json = serde_json::to_vec(ack).expect("ack serialises");
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// Decodes a complete acknowledgement frame (length prefix included, nothing after it).
pub fn decode_ack(bytes: &[u8]) -> Result<Ack> {
    let len_bytes: [u8; 4] = bytes
        .get(..4)
        .ok_or_else(|| ProtocolError::Malformed("ack shorter than its length prefix".into()))?
        .try_into()
        .expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_ACK_LEN {
        return Err(ProtocolError::TooLarge {
            len: len as u64,
            max: MAX_ACK_LEN as u64,
        });
    }
    let body = bytes
        .get(4..4 + len)
        .ok_or_else(|| ProtocolError::Malformed("ack truncated".into()))?;
    if bytes.len() > 4 + len {
        return Err(ProtocolError::TrailingBytes {
            expected: len as u64,
        });
    }
    serde_json::from_slice(body).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

#[cfg(test)]
mod session_props;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
