//! The server's side of one stream: an incremental parser fed whatever bytes arrive.
//!
//! The transport calls [`RequestReader::feed`] with each chunk and [`RequestReader::finish`] at the
//! end of the stream. As soon as the header is complete, `feed` says so, so the server can decide
//! (duplicate? over a limit? busy?) before the body arrives and stop the stream early. Nothing
//! beyond the announced body length is accepted, and nothing is allocated ahead of the bytes that
//! actually arrived, so a peer announcing a large body and sending nothing costs nothing. The body
//! is hashed as it arrives, so the end of the stream costs no pass over the whole body.
//!
//! The body is kept as the chunks the transport handed over ([`Body`]), not copied together: the
//! server writes them to disk as they are, so a received byte is copied once less, and no
//! body-sized buffer is allocated (and page-faulted in) per upload. A chunk shares the buffer the
//! transport received it in; so that a peer's framing cannot make a body hold far more memory
//! than its size, chunks smaller than [`MIN_SHARED_CHUNK`] are copied instead of kept.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{
    decode_request_header, decode_request_prefix, ProtocolError, RequestHead, RequestKind, Result,
    REQUEST_PREFIX_LEN,
};

/// A complete request: its header and its verified body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub head: RequestHead,
    pub body: Body,
}

/// A chunk at least this long is kept as it is, sharing the transport's receive buffer; a
/// shorter one is copied. A full QUIC packet carries over 1,100 bytes of a stream, so an upload
/// from a station is kept nearly whole; a peer sending tiny frames (each would keep a whole
/// received datagram, or a batch of them, alive) gets its bytes copied, and what a kept chunk can
/// hold alive is at most the receive buffer it shares (64 KiB) per 1,024 bytes of body.
pub const MIN_SHARED_CHUNK: usize = 1024;

/// A request body as it arrived: the chunks in order, sharing the transport's buffers (short
/// chunks copied together, [`MIN_SHARED_CHUNK`]).
#[derive(Debug, Clone, Default)]
pub struct Body {
    chunks: Vec<Bytes>,
    /// Copies of short chunks since the last kept one, not yet in `chunks`.
    copied: Vec<u8>,
    len: usize,
}

impl Body {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks in order; together they are the body.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// The body's bytes in order, across its chunks.
    fn bytes(&self) -> impl Iterator<Item = &u8> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The body in one piece (a copy).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len);
        for chunk in &self.chunks {
            all.extend_from_slice(chunk);
        }
        all
    }

    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        if chunk.len() < MIN_SHARED_CHUNK {
            self.copied.extend_from_slice(&chunk);
        } else {
            self.seal();
            self.chunks.push(chunk);
        }
    }

    /// Moves the copied short chunks into `chunks`, after the ones before them.
    fn seal(&mut self) {
        if !self.copied.is_empty() {
            self.chunks.push(std::mem::take(&mut self.copied).into());
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        let mut body = Self::default();
        body.push(bytes.into());
        body.seal();
        body
    }
}

/// Equal when the bytes are, however they are split into chunks.
impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.bytes().eq(other.bytes())
    }
}

impl PartialEq<[u8]> for Body {
    fn eq(&self, other: &[u8]) -> bool {
        self.len == other.len() && self.bytes().eq(other.iter())
    }
}

impl PartialEq<Vec<u8>> for Body {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self == other.as_slice()
    }
}

#[derive(Debug)]
enum State {
    Prefix,
    Header { kind: RequestKind, len: usize },
    Body,
    Failed,
}

#[derive(Debug)]
pub struct RequestReader {
    negotiated: u8,
    max_bundle_size: u64,
    state: State,
    buf: Vec<u8>,
    head: Option<RequestHead>,
    body: Body,
    hasher: Sha256,
}

impl RequestReader {
    pub fn new(negotiated_version: u8, max_bundle_size: u64) -> Self {
        Self {
            negotiated: negotiated_version,
            max_bundle_size,
            state: State::Prefix,
            buf: Vec::new(),
            head: None,
            body: Body::default(),
            hasher: Sha256::new(),
        }
    }

    /// The header, once it has been read.
    pub fn head(&self) -> Option<&RequestHead> {
        self.head.as_ref()
    }

    /// Body bytes received so far.
    pub fn body_received(&self) -> u64 {
        self.body.len() as u64
    }

    /// Consumes one chunk (a copy of it, where it is body). Returns `true` when this chunk
    /// completed the header. After an error the reader refuses everything: the stream is to be
    /// answered and stopped.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<bool> {
        self.feed_bytes(Bytes::copy_from_slice(chunk))
    }

    /// As [`Self::feed`], keeping the body's part of `chunk` without copying it.
    pub fn feed_bytes(&mut self, mut chunk: Bytes) -> Result<bool> {
        let mut head_ready = false;
        while !chunk.is_empty() {
            match self.state {
                State::Failed => {
                    return Err(ProtocolError::Malformed("stream already failed".into()))
                }
                State::Prefix => {
                    let take = (REQUEST_PREFIX_LEN - self.buf.len()).min(chunk.len());
                    self.buf.extend_from_slice(&chunk.split_to(take));
                    if self.buf.len() == REQUEST_PREFIX_LEN {
                        let prefix: [u8; REQUEST_PREFIX_LEN] =
                            self.buf[..].try_into().expect("prefix length");
                        let (kind, len) =
                            self.fail_on(decode_request_prefix(&prefix, self.negotiated))?;
                        self.buf.clear();
                        self.state = State::Header { kind, len };
                        if len == 0 {
                            head_ready = self.parse_header(kind)?;
                        }
                    }
                }
                State::Header { kind, len } => {
                    let take = (len - self.buf.len()).min(chunk.len());
                    self.buf.extend_from_slice(&chunk.split_to(take));
                    if self.buf.len() == len {
                        head_ready = self.parse_header(kind)?;
                    }
                }
                State::Body => {
                    let expected = self.head.as_ref().expect("header read").body_len();
                    let room = expected - self.body.len() as u64;
                    if chunk.len() as u64 > room {
                        return self.fail_on(Err(ProtocolError::TrailingBytes { expected }));
                    }
                    self.hasher.update(&chunk);
                    self.body.push(std::mem::take(&mut chunk));
                }
            }
        }
        Ok(head_ready)
    }

    fn parse_header(&mut self, kind: RequestKind) -> Result<bool> {
        let head = decode_request_header(kind, &self.buf, self.max_bundle_size);
        let head = self.fail_on(head)?;
        self.buf = Vec::new();
        self.head = Some(head);
        self.state = State::Body;
        Ok(true)
    }

    fn fail_on<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    /// The stream ended: returns the complete request, its body checked against the header.
    pub fn finish(self) -> Result<Request> {
        let Some(head) = self.head else {
            return Err(match self.state {
                State::Failed => ProtocolError::Malformed("stream already failed".into()),
                _ => ProtocolError::HeaderTruncated,
            });
        };
        if let RequestHead::Upload(h) = &head {
            h.verify_digest(self.body.len() as u64, &hex::encode(self.hasher.finalize()))?;
        } else if !self.body.is_empty() {
            return Err(ProtocolError::TrailingBytes { expected: 0 });
        }
        let mut body = self.body;
        body.seal();
        Ok(Request { head, body })
    }
}
