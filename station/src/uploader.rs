//! Uploads spooled bundles over QUIC with the station's client certificate.
//!
//! One connection per pass, one bidirectional stream per bundle (see `nachtwacht_wire::protocol`).
//! The local copy is deleted only on a `stored` or `duplicate` acknowledgement; transport failures
//! leave it in the spool and are retried with exponential backoff and jitter, trying each configured
//! server address in turn.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use nachtwacht_wire::protocol::{
    decode_ack, encode_request_head, station_action, Ack, StationAction, UploadHeader, ALPN,
    MAX_ACK_LEN,
};
use quinn::crypto::rustls::QuicClientConfig;
use rand::Rng;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

use crate::config::StationConfig;
use crate::spool::{Spool, SpooledBundle};
use crate::{Error, Result};

/// How long one bundle's upload may take before the stream is given up.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Rounds of retry before a pass gives up and leaves the rest in the spool.
pub const DEFAULT_MAX_ROUNDS: u32 = 6;

pub struct Uploader {
    endpoint: quinn::Endpoint,
    servers: Vec<String>,
    server_name: String,
    max_rounds: u32,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    pub acknowledged: usize,
    pub set_aside: usize,
}

fn upload_err(what: &str) -> impl FnOnce(String) -> Error + '_ {
    move |e| Error::Upload(format!("{what}: {e}"))
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
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok(tls)
}

impl Uploader {
    pub fn new(config: &StationConfig) -> Result<Self> {
        Self::with_tls(config, client_tls_config(config)?)
    }

    /// Builds an uploader around any TLS configuration (tests use this to present foreign
    /// certificates, or none).
    pub fn with_tls(config: &StationConfig, tls: rustls::ClientConfig) -> Result<Self> {
        let quic = QuicClientConfig::try_from(tls).map_err(|e| Error::Config(e.to_string()))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(
            Duration::from_secs(30)
                .try_into()
                .expect("valid idle timeout"),
        ));
        transport.keep_alive_interval(Some(Duration::from_secs(10)));
        client_config.transport_config(Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client("0.0.0.0:0".parse().expect("addr"))
            .map_err(|e| Error::Upload(format!("binding a UDP socket: {e}")))?;
        endpoint.set_default_client_config(client_config);
        Ok(Self {
            endpoint,
            servers: config.servers.clone(),
            server_name: config.server_name.clone(),
            max_rounds: DEFAULT_MAX_ROUNDS,
        })
    }

    /// How many failed rounds a drain tolerates before it gives up (at least one).
    pub fn with_max_rounds(mut self, rounds: u32) -> Self {
        self.max_rounds = rounds.max(1);
        self
    }

    async fn connect(&self) -> Result<quinn::Connection> {
        let mut last = String::from("no server address configured");
        for server in &self.servers {
            let addr: SocketAddr = match server.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(a)) => a,
                Ok(None) | Err(_) => {
                    last = format!("{server}: cannot resolve");
                    continue;
                }
            };
            let connecting = self
                .endpoint
                .connect(addr, &self.server_name)
                .map_err(|e| upload_err("connect")(e.to_string()))?;
            match connecting.await {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    warn!(server = %server, error = %e, "connection failed");
                    last = format!("{server}: {e}");
                }
            }
        }
        Err(Error::Upload(last))
    }

    /// Uploads one bundle and returns the server's acknowledgement.
    pub async fn upload(
        &self,
        conn: &quinn::Connection,
        bundle: &SpooledBundle,
        ciphertext: &[u8],
    ) -> Result<Ack> {
        let header = UploadHeader::for_ciphertext(bundle.bundle_id, bundle.sequence, ciphertext);
        let exchange = async {
            let (mut send, mut recv) = conn
                .open_bi()
                .await
                .map_err(|e| upload_err("open stream")(e.to_string()))?;
            send.write_all(&encode_request_head(&header))
                .await
                .map_err(|e| upload_err("send header")(e.to_string()))?;
            send.write_all(ciphertext)
                .await
                .map_err(|e| upload_err("send bundle")(e.to_string()))?;
            send.finish()
                .map_err(|e| upload_err("finish stream")(e.to_string()))?;
            let reply = recv
                .read_to_end(MAX_ACK_LEN + 4)
                .await
                .map_err(|e| upload_err("read acknowledgement")(e.to_string()))?;
            decode_ack(&reply).map_err(|e| upload_err("acknowledgement")(e.to_string()))
        };
        tokio::time::timeout(STREAM_TIMEOUT, exchange)
            .await
            .map_err(|_| Error::Upload(format!("bundle {} timed out", bundle.bundle_id)))?
    }

    /// Uploads everything pending, retrying transport failures with backoff.
    pub async fn drain(&self, spool: &Spool) -> Result<DrainOutcome> {
        let mut outcome = DrainOutcome::default();
        let mut round = 0;
        loop {
            let pending = spool.pending()?;
            if pending.is_empty() {
                return Ok(outcome);
            }
            match self.drain_round(spool, &pending, &mut outcome).await {
                Ok(None) => continue,
                Ok(Some(delay)) => tokio::time::sleep(delay).await,
                Err(e) => {
                    round += 1;
                    if round >= self.max_rounds {
                        return Err(e);
                    }
                    let delay = backoff(round);
                    warn!(error = %e, round, delay_ms = delay.as_millis() as u64, "upload failed, retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One connection's worth of uploads. Returns a delay when the server asked to wait.
    async fn drain_round(
        &self,
        spool: &Spool,
        pending: &[SpooledBundle],
        outcome: &mut DrainOutcome,
    ) -> Result<Option<Duration>> {
        let conn = self.connect().await?;
        for bundle in pending {
            let ciphertext = spool.read(bundle)?;
            let ack = self.upload(&conn, bundle, &ciphertext).await?;
            match station_action(&ack) {
                StationAction::Delete => {
                    spool.acknowledge(bundle)?;
                    outcome.acknowledged += 1;
                    info!(bundle = %bundle.bundle_id, sequence = bundle.sequence, code = ?ack.code, "bundle acknowledged");
                }
                StationAction::SetAside(reason) => {
                    warn!(bundle = %bundle.bundle_id, %reason, "bundle rejected, set aside");
                    spool.set_aside(bundle, &reason)?;
                    outcome.set_aside += 1;
                }
                StationAction::RetryAfter(ms) => {
                    conn.close(0u32.into(), b"busy");
                    return Ok(Some(Duration::from_millis(ms)));
                }
            }
        }
        conn.close(0u32.into(), b"done");
        Ok(None)
    }

    /// Waits until the connection's close is sent, so the server sees a clean end.
    pub async fn shutdown(&self) {
        self.endpoint.wait_idle().await;
    }
}

/// Exponential backoff with full jitter: up to 200 ms × 2^round, capped at 30 s.
pub fn backoff(round: u32) -> Duration {
    let cap = (200u64 << round.min(8)).min(30_000);
    Duration::from_millis(rand::thread_rng().gen_range(cap / 2..=cap))
}
