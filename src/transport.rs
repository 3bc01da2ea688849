//! QUIC ingest: the only module that touches quinn and rustls on the server side.
//!
//! Every connection must present a client certificate that chains to the nachtwacht CA
//! (`WebPkiClientVerifier`); the certificate's fingerprint must belong to an enrolled, unrevoked
//! station, checked per connection so a revocation takes effect without a restart. Each
//! bidirectional stream carries one bundle (`nachtwacht_wire::protocol`); the acknowledgement is
//! written only after the spool reports the bundle durable. A malformed stream gets `rejected` with
//! its reason and affects no other stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nachtwacht_wire::protocol::{
    decode_request_header, decode_request_prefix, encode_ack, Ack, AckCode, ProtocolError,
    UploadHeader, ALPN, REQUEST_PREFIX_LEN,
};
use quinn::crypto::rustls::QuicServerConfig;
use rusqlite::OptionalExtension;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn, Instrument};

use crate::server::Context;
use crate::spool::{Spool, StoreOutcome};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Streams a connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 16;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const STREAM_TIMEOUT: Duration = Duration::from_secs(120);

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Server TLS: our certificate, and client certificates required from the nachtwacht CA.
pub fn server_tls_config(ctx: &Context) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read_pem(&ctx.dir.ca_cert())?) {
        roots
            .add(cert.map_err(|e| Error::Tls(e.to_string()))?)
            .map_err(|e| Error::Tls(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&read_pem(&ctx.dir.server_cert())?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&read_pem(&ctx.dir.server_key())?)
        .map_err(|e| Error::Tls(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok(tls)
}

pub struct Ingest {
    endpoint: quinn::Endpoint,
    ctx: Context,
    spool: Spool,
    /// Woken after every stored bundle so the decode worker starts at once.
    stored: Arc<Notify>,
}

/// An enrolled station, as identified by its certificate.
#[derive(Debug, Clone)]
struct Station {
    id: i64,
    name: String,
}

impl Ingest {
    pub fn bind(ctx: Context, addr: SocketAddr, stored: Arc<Notify>) -> Result<Self> {
        let tls = server_tls_config(&ctx)?;
        let quic = QuicServerConfig::try_from(tls).map_err(|e| Error::Tls(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(MAX_CONCURRENT_STREAMS.into())
            .max_concurrent_uni_streams(0u32.into())
            .max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("valid idle timeout")));
        server_config.transport_config(Arc::new(transport));
        let endpoint = quinn::Endpoint::server(server_config, addr)
            .map_err(|source| Error::Bind { addr, source })?;
        let spool = Spool::new(ctx.dir.spool(), ctx.db.clone());
        Ok(Self {
            endpoint,
            ctx,
            spool,
            stored,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr().expect("bound socket")
    }

    /// Accepts connections until `shutdown` turns true, then waits for open uploads to finish.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        loop {
            tokio::select! {
                incoming = this.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let remote = incoming.remote_address();
                    let this = this.clone();
                    tokio::spawn(
                        async move { this.handle_connection(incoming).await }
                            .instrument(tracing::info_span!("station_connection", %remote)),
                    );
                }
                _ = shutdown.changed() => break,
            }
        }
        this.endpoint.close(0u32.into(), b"server shutting down");
        this.endpoint.wait_idle().await;
    }

    fn station_for(&self, certs: &[CertificateDer<'static>]) -> Option<Station> {
        let fingerprint = crate::pki::cert_fingerprint_der(certs.first()?);
        self.ctx
            .db
            .lock()
            .query_row(
                "SELECT id, name FROM stations WHERE cert_sha256 = ?1 AND revoked_at_ms IS NULL",
                [fingerprint],
                |r| {
                    Ok(Station {
                        id: r.get(0)?,
                        name: r.get(1)?,
                    })
                },
            )
            .optional()
            .ok()
            .flatten()
    }

    async fn handle_connection(self: Arc<Self>, incoming: quinn::Incoming) {
        let conn = match incoming.await {
            Ok(c) => c,
            Err(e) => {
                // Covers missing certificates and certificates from another CA.
                warn!(error = %e, "connection refused during handshake");
                return;
            }
        };
        let certs = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
        let Some(station) = certs.and_then(|c| self.station_for(&c)) else {
            warn!("connection refused: certificate belongs to no enrolled, unrevoked station");
            conn.close(1u32.into(), b"unknown or revoked station");
            return;
        };
        info!(station = %station.name, "station connected");
        loop {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    let this = self.clone();
                    let span = tracing::info_span!("upload", station = %station.name);
                    let station = station.clone();
                    tokio::spawn(
                        async move { this.handle_stream(&station, send, recv).await }
                            .instrument(span),
                    );
                }
                Err(e) => {
                    debug!(station = %station.name, reason = %e, "connection ended");
                    return;
                }
            }
        }
    }

    async fn handle_stream(
        &self,
        station: &Station,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let ack = match tokio::time::timeout(STREAM_TIMEOUT, self.receive(station, &mut recv)).await
        {
            Ok(ack) => ack,
            Err(_) => rejected(None, "upload timed out".into()),
        };
        match ack.code {
            AckCode::Rejected => {
                warn!(bundle = ?ack.bundle_id, reason = ?ack.reason, "upload rejected")
            }
            code => info!(bundle = ?ack.bundle_id, ?code, "upload acknowledged"),
        }
        if let Err(e) = send.write_all(&encode_ack(&ack)).await {
            warn!(error = %e, "could not send acknowledgement");
            return;
        }
        let _ = send.finish();
        // Let the acknowledgement reach the peer before the stream is dropped.
        let _ = send.stopped().await;
    }

    async fn receive(&self, station: &Station, recv: &mut quinn::RecvStream) -> Ack {
        let mut prefix = [0u8; REQUEST_PREFIX_LEN];
        if let Err(e) = recv.read_exact(&mut prefix).await {
            return rejected(None, format!("reading header: {e}"));
        }
        let header_len = match decode_request_prefix(&prefix) {
            Ok(n) => n,
            Err(e) => return protocol_rejection(recv, None, e),
        };
        let mut header_bytes = vec![0u8; header_len];
        if let Err(e) = recv.read_exact(&mut header_bytes).await {
            return rejected(None, format!("reading header: {e}"));
        }
        let header =
            match decode_request_header(&header_bytes, self.ctx.config.ingest.max_bundle_bytes) {
                Ok(h) => h,
                Err(e) => return protocol_rejection(recv, None, e),
            };
        let ciphertext = match recv.read_to_end(header.size as usize).await {
            Ok(c) => c,
            Err(e) => return rejected(Some(&header), format!("reading bundle: {e}")),
        };
        if let Err(e) = header.verify(&ciphertext) {
            return rejected(Some(&header), e.to_string());
        }
        let spool = self.spool.clone();
        let station_id = station.id;
        let h = header.clone();
        let stored = tokio::task::spawn_blocking(move || {
            spool.store(station_id, &h, &ciphertext, crate::now_ms())
        })
        .await;
        match stored {
            Ok(Ok(outcome)) => {
                if outcome == StoreOutcome::Stored {
                    self.stored.notify_one();
                }
                Ack {
                    bundle_id: Some(header.bundle_id),
                    code: match outcome {
                        StoreOutcome::Stored => AckCode::Stored,
                        StoreOutcome::Duplicate => AckCode::Duplicate,
                    },
                    reason: None,
                    retry_after_ms: None,
                    server_time_ms: crate::now_ms(),
                }
            }
            // Not the station's fault: ask it to come back, never acknowledge.
            Ok(Err(e)) => {
                warn!(error = %e, "spool write failed");
                busy(&header, 5_000)
            }
            Err(e) => {
                warn!(error = %e, "spool task failed");
                busy(&header, 5_000)
            }
        }
    }
}

fn protocol_rejection(
    recv: &mut quinn::RecvStream,
    header: Option<&UploadHeader>,
    e: ProtocolError,
) -> Ack {
    // Do not read the rest of a stream we will never accept.
    let _ = recv.stop(1u32.into());
    rejected(header, e.to_string())
}

fn rejected(header: Option<&UploadHeader>, reason: String) -> Ack {
    Ack {
        bundle_id: header.map(|h| h.bundle_id),
        code: AckCode::Rejected,
        reason: Some(reason),
        retry_after_ms: None,
        server_time_ms: crate::now_ms(),
    }
}

fn busy(header: &UploadHeader, retry_after_ms: u64) -> Ack {
    Ack {
        bundle_id: Some(header.bundle_id),
        code: AckCode::Busy,
        reason: Some("server could not store the bundle now".into()),
        retry_after_ms: Some(retry_after_ms),
        server_time_ms: crate::now_ms(),
    }
}
