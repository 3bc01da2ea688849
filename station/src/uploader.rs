//! Uploads spooled bundles over QUIC with the station's client certificate.
//!
//! This is the IO half of the station's protocol: it dials, opens streams, moves bytes and reports
//! what happened to [`UploadSession`] (the pure half in `nachtwacht_wire::protocol::session`), which
//! decides what happens next: which bundle, when to retry, which server to fail over to. The local
//! copy is deleted only when the session says so, i.e. on a `stored` or `duplicate`
//! acknowledgement naming that bundle.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nachtwacht_wire::protocol::session::{Command, Event, Queued, SessionConfig, UploadSession};
use nachtwacht_wire::protocol::{
    alpn_ids, decode_ack, encode_heartbeat, encode_upload_head, Ack, Heartbeat, UploadHeader,
    MAX_ACK_LEN,
};
use nachtwacht_wire::BundleId;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;
use tracing::{debug, info, warn, Instrument};

use crate::config::StationConfig;
use crate::spool::{Spool, SpooledBundle};
use crate::{Error, Result};

/// How long one stream (one bundle or heartbeat) may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a handshake may take before the next address is tried (a dead server answers nothing).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures in a row after which a pass gives up and leaves the rest in the spool.
pub const DEFAULT_MAX_FAILURES: u32 = 6;

pub struct Uploader {
    endpoint: quinn::Endpoint,
    quic: Arc<QuicClientConfig>,
    servers: Vec<String>,
    server_name: String,
    station: String,
    session: SessionConfig,
    max_failures: u32,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainOutcome {
    pub acknowledged: usize,
    pub set_aside: usize,
    pub heartbeats: usize,
    /// Station clock minus server clock, from the last acknowledgement.
    pub clock_offset_ms: Option<i64>,
    /// The age recipient the server asked for in its last positive acknowledgement.
    pub recipient: Option<String>,
    /// A new certificate the server issued for this run's renewal request.
    pub certificate: Option<String>,
}

/// The rustls client configuration: trust only the nachtwacht CA, present the station certificate.
pub fn client_tls_config(config: &StationConfig) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(config.ca_cert_pem.as_bytes()) {
        let cert = cert.map_err(|e| Error::Config(format!("CA certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Config(format!("CA certificate: {e}")))?;
    }
    let chain = CertificateDer::pem_slice_iter(config.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("station certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(config.key_pem.as_bytes())
        .map_err(|e| Error::Config(format!("station key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| Error::Config(format!("station certificate and key: {e}")))?;
    tls.alpn_protocols = alpn_ids();
    tls.resumption = rustls::client::Resumption::store(session_store(&config.cert_pem));
    Ok(tls)
}

/// The session tickets of one station certificate, kept for the life of the process: the agent
/// makes a new client configuration every pass, and without a store that outlives it every pass
/// (and every reconnection after a server restart) would be a full handshake. Keyed by the
/// certificate, never by the server's name alone: a process that speaks for several stations
/// (tests, `bench ingest`) must not offer one station's ticket on another's connection, which
/// would resume the first station's identity. Early data stays off (rustls' default).
fn session_store(cert_pem: &str) -> Arc<dyn rustls::client::ClientSessionStore> {
    use std::sync::{Mutex, OnceLock};
    type Stores = Mutex<HashMap<String, Arc<rustls::client::ClientSessionMemoryCache>>>;
    static STORES: OnceLock<Stores> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut stores = stores
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    stores
        .entry(cert_pem.to_string())
        // A few servers (fail-over) with two tickets each.
        .or_insert_with(|| Arc::new(rustls::client::ClientSessionMemoryCache::new(8)))
        .clone()
}

/// Default idle timeout of a station's connection; a server that died silently is noticed after it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The server is asked (QUIC ACK frequency extension) to acknowledge every `ACK_EVERY`th packet
/// instead of every second one: a station's traffic is one bulk transfer per bundle, and each
/// acknowledgement costs both ends a packet to seal, send, receive and open. Losses and reordering
/// are still acknowledged at once.
pub const ACK_EVERY: u32 = 32;

/// QUIC settings of a station: small windows (a station sends, it hardly receives), a keep-alive
/// at a third of the idle timeout, and fewer acknowledgements ([`ACK_EVERY`]).
pub fn client_transport() -> quinn::TransportConfig {
    client_transport_with(IDLE_TIMEOUT)
}

pub fn client_transport_with(idle_timeout: Duration) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(idle_timeout.try_into().expect("valid idle timeout")))
        .keep_alive_interval(Some(idle_timeout / 3))
        .max_concurrent_uni_streams(0u32.into())
        .max_concurrent_bidi_streams(0u32.into())
        .stream_receive_window(16_384u32.into())
        .receive_window(65_536u32.into())
        .datagram_receive_buffer_size(None);
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold((ACK_EVERY - 1).into());
    transport.ack_frequency_config(Some(ack));
    transport
}

/// An event from a task, tagged with the connection generation it belongs to.
struct Msg(u64, Event);

impl Uploader {
    pub fn new(config: &StationConfig) -> Result<Self> {
        Self::with_tls(config, client_tls_config(config)?)
    }

    /// Builds an uploader around any TLS configuration (tests use this to present foreign
    /// certificates, or none).
    pub fn with_tls(config: &StationConfig, tls: rustls::ClientConfig) -> Result<Self> {
        let quic =
            Arc::new(QuicClientConfig::try_from(tls).map_err(|e| Error::Config(e.to_string()))?);
        let endpoint = quinn::Endpoint::client("0.0.0.0:0".parse().expect("addr"))
            .map_err(|e| Error::Upload(format!("binding a UDP socket: {e}")))?;
        Ok(Self {
            endpoint,
            quic,
            idle_timeout: IDLE_TIMEOUT,
            servers: config.servers.clone(),
            server_name: config.server_name.clone(),
            station: config.name.clone(),
            session: SessionConfig {
                servers: config.servers.len(),
                heartbeat_interval_ms: config.heartbeat_interval_secs.max(1) * 1_000,
                seed: rand::random(),
                ..SessionConfig::default()
            },
            max_failures: DEFAULT_MAX_FAILURES,
            connect_timeout: CONNECT_TIMEOUT,
        })
    }

    /// How many failures in a row a drain tolerates before it gives up (at least one).
    pub fn with_max_failures(mut self, failures: u32) -> Self {
        self.max_failures = failures.max(1);
        self
    }

    /// Idle timeout of the connection (a silently dead server is noticed after it).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long one handshake may take before failing over.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Backoff of the first retry and its cap, in milliseconds.
    pub fn with_backoff(mut self, base_ms: u64, cap_ms: u64) -> Self {
        self.session.backoff_base_ms = base_ms;
        self.session.backoff_cap_ms = cap_ms;
        self
    }

    async fn connect(&self, server: usize) -> Result<quinn::Connection, String> {
        let Some(address) = self.servers.get(server) else {
            return Err("no server address configured".into());
        };
        let addr: SocketAddr = address
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("{address}: cannot resolve"))?;
        let mut client_config = quinn::ClientConfig::new(self.quic.clone());
        client_config.transport_config(Arc::new(client_transport_with(self.idle_timeout)));
        let connecting = self
            .endpoint
            .connect_with(client_config, addr, &self.server_name)
            .map_err(|e| format!("{address}: {e}"))?;
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(conn) => conn.map_err(|e| format!("{address}: {e}")),
            Err(_) => Err(format!(
                "{address}: no answer within {:?}",
                self.connect_timeout
            )),
        }
    }

    /// Uploads everything pending and sends a heartbeat, retrying failures as the session decides.
    /// `heartbeat` builds the report from the current clock-offset estimate.
    pub async fn drain(
        &self,
        spool: &Spool,
        heartbeat: &(dyn Fn(Option<i64>) -> Heartbeat + Sync),
    ) -> Result<DrainOutcome> {
        let mut session = UploadSession::new(self.session.clone());
        let mut waiting: HashMap<BundleId, SpooledBundle> = HashMap::new();
        for b in spool.pending()? {
            session.enqueue(Queued {
                bundle_id: b.bundle_id,
                sequence: b.sequence,
            });
            waiting.insert(b.bundle_id, b);
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let mut outcome = DrainOutcome::default();
        let learned_recipient = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let learned_certificate = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let mut acks: HashMap<BundleId, Ack> = HashMap::new();
        let mut conn: Option<(u64, quinn::Connection)> = None;
        let mut generation = 0u64;
        let start = Instant::now();
        let now = || start.elapsed().as_millis() as u64;

        loop {
            while let Some(cmd) = session.poll(now()) {
                match cmd {
                    Command::Connect { server } => {
                        generation += 1;
                        if let Some((_, c)) = conn.take() {
                            c.close(0u32.into(), b"reconnecting");
                        }
                        // Nothing else is in flight while (re)connecting, so this waits inline.
                        match self.connect(server).await {
                            Ok(c) => {
                                let (tx, closed, gen) = (tx.clone(), c.clone(), generation);
                                tokio::spawn(async move {
                                    let reason = closed.closed().await.to_string();
                                    let _ = tx.send(Msg(gen, Event::ConnectionLost { reason }));
                                });
                                conn = Some((generation, c));
                                session.handle(now(), Event::Connected);
                            }
                            Err(reason) => {
                                warn!(%reason, "connection failed");
                                session.handle(now(), Event::ConnectFailed { reason });
                            }
                        }
                    }
                    Command::Send(q) => {
                        let Some((gen, c)) = conn.clone() else {
                            session.handle(
                                now(),
                                Event::StreamFailed {
                                    bundle_id: q.bundle_id,
                                    reason: "not connected".into(),
                                },
                            );
                            continue;
                        };
                        let bundle = &waiting[&q.bundle_id];
                        let ciphertext = spool.read(bundle)?;
                        let header = UploadHeader::for_ciphertext(
                            q.bundle_id,
                            &self.station,
                            q.sequence,
                            &ciphertext,
                        );
                        let tx = tx.clone();
                        tokio::spawn(
                            async move {
                                let event = match exchange(
                                    &c,
                                    encode_upload_head(&header),
                                    ciphertext.into(),
                                )
                                .await
                                {
                                    Ok(ack) => Event::Acknowledged {
                                        bundle_id: q.bundle_id,
                                        ack,
                                    },
                                    Err(reason) => Event::StreamFailed {
                                        bundle_id: q.bundle_id,
                                        reason,
                                    },
                                };
                                let _ = tx.send(Msg(gen, event));
                            }
                            .instrument(tracing::debug_span!("upload", bundle = %q.bundle_id)),
                        );
                    }
                    Command::SendHeartbeat => {
                        let Some((gen, c)) = conn.clone() else {
                            session.handle(
                                now(),
                                Event::HeartbeatFailed {
                                    reason: "not connected".into(),
                                },
                            );
                            continue;
                        };
                        let request = encode_heartbeat(&heartbeat(outcome.clock_offset_ms));
                        let tx = tx.clone();
                        let learned = learned_recipient.clone();
                        let certificate = learned_certificate.clone();
                        tokio::spawn(async move {
                            let event = match exchange(&c, request, bytes::Bytes::new()).await {
                                Ok(ack) => {
                                    if ack.recipient.is_some() {
                                        *learned.lock().expect("recipient lock") = ack.recipient;
                                    }
                                    if ack.certificate.is_some() {
                                        *certificate.lock().expect("certificate lock") =
                                            ack.certificate;
                                    }
                                    Event::HeartbeatAcknowledged
                                }
                                Err(reason) => Event::HeartbeatFailed { reason },
                            };
                            let _ = tx.send(Msg(gen, event));
                        });
                    }
                    Command::Delete(q) => {
                        let bundle = waiting
                            .remove(&q.bundle_id)
                            .expect("deleted bundle was waiting");
                        let ack = acks
                            .remove(&q.bundle_id)
                            .expect("deleted on an acknowledgement");
                        spool.acknowledge(&bundle, &ack)?;
                        outcome.acknowledged += 1;
                        info!(bundle = %q.bundle_id, sequence = q.sequence, code = ?ack.code, "bundle acknowledged");
                    }
                    Command::SetAside { bundle, reason } => {
                        let b = waiting
                            .remove(&bundle.bundle_id)
                            .expect("set-aside bundle was waiting");
                        warn!(bundle = %bundle.bundle_id, %reason, "bundle rejected, set aside");
                        spool.set_aside(&b, &reason)?;
                        outcome.set_aside += 1;
                    }
                }
            }
            if session.is_done(now()) {
                break;
            }
            if session.consecutive_failures() >= self.max_failures {
                if let Some((_, c)) = conn.take() {
                    c.close(0u32.into(), b"giving up");
                }
                return Err(Error::Upload(
                    session.last_error().unwrap_or("upload failed").to_string(),
                ));
            }
            let wait = session
                .poll_timeout()
                .map(|t| Duration::from_millis(t.saturating_sub(now())))
                .unwrap_or(STREAM_TIMEOUT * 2);
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = tokio::time::sleep(wait) => None,
            };
            let Some(Msg(gen, event)) = msg else {
                continue;
            };
            if gen != generation {
                continue; // from a connection we already gave up on
            }
            if let Event::ConnectionLost { reason } = &event {
                debug!(%reason, "connection lost");
                conn = None;
            }
            if let Event::Acknowledged { bundle_id, ack } = &event {
                let local = chrono::Utc::now().timestamp_millis();
                outcome.clock_offset_ms = Some(local - ack.server_time_ms);
                if ack.recipient.is_some() {
                    *learned_recipient.lock().expect("recipient lock") = ack.recipient.clone();
                }
                acks.insert(*bundle_id, ack.clone());
            }
            if event == Event::HeartbeatAcknowledged {
                outcome.heartbeats += 1;
            }
            session.handle(now(), event);
        }
        if let Some((_, c)) = conn.take() {
            c.close(0u32.into(), b"done");
        }
        outcome.recipient = learned_recipient.lock().expect("recipient lock").take();
        outcome.certificate = learned_certificate.lock().expect("certificate lock").take();
        Ok(outcome)
    }

    /// Waits (briefly) until connection closes are sent, so the server sees a clean end.
    pub async fn shutdown(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// One request and its acknowledgement on a fresh stream. When the server answers early (duplicate,
/// busy, rejected) it stops reading; the write then fails but the answer is still there to read.
pub async fn exchange(
    conn: &quinn::Connection,
    head: Vec<u8>,
    body: bytes::Bytes,
) -> Result<Ack, String> {
    let run = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| format!("open stream: {e}"))?;
        let written = async {
            send.write_all(&head).await?;
            // Handed to quinn as is: no copy of the bundle into the send buffer.
            send.write_chunk(body).await?;
            send.finish().map_err(|_| quinn::WriteError::ClosedStream)?;
            Ok::<_, quinn::WriteError>(())
        }
        .await;
        match recv.read_to_end(MAX_ACK_LEN + 4).await {
            Ok(reply) => decode_ack(&reply).map_err(|e| format!("acknowledgement: {e}")),
            Err(e) => Err(match written {
                Err(w) => format!("send: {w}"),
                Ok(()) => format!("read acknowledgement: {e}"),
            }),
        }
    };
    tokio::time::timeout(STREAM_TIMEOUT, run)
        .await
        .map_err(|_| "stream timed out".to_string())?
}
