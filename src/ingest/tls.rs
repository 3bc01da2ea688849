//! Server TLS for the ingest: our certificate, client certificates required from the nachtwacht CA
//! and checked against its current revocation list, TLS 1.3 only, ALPN naming the protocol versions
//! this build speaks, session tickets under the data directory's rotating ticket keys
//! ([`crate::trust::tickets`]) and no early data.

use std::path::Path;
use std::sync::Arc;

use nachtwacht_wire::protocol::alpn_ids;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::{Error, Result};
use crate::base::config::IngestConfig;
use crate::base::datadir::DataDir;
use crate::trust::tickets::TicketKeys;

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

pub fn server_tls_config(dir: &DataDir, tickets: Arc<TicketKeys>) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read(&dir.ca_cert())?) {
        roots.add(cert.map_err(tls_err)?).map_err(tls_err)?;
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&read(&dir.crl())?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(tls_err)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .build()
        .map_err(tls_err)?;
    let verifier = Arc::new(Counted(verifier));
    let chain = CertificateDer::pem_slice_iter(&read(&dir.server_cert())?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(tls_err)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&dir.server_key())?).map_err(tls_err)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    tls.alpn_protocols = alpn_ids();
    tls.ticketer = tickets;
    // 0-RTT would let whoever recorded a station's first flight replay it; it stays off.
    tls.max_early_data_size = 0;
    Ok(tls)
}

/// The verifier, counting the certificates it checks: one per full handshake, none for a resumed
/// session (`nachtwacht_tls_full_handshakes` beside `nachtwacht_tls_resumptions`).
#[derive(Debug)]
struct Counted(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Counted {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        crate::base::metrics::metrics().tls_full_handshakes.inc();
        self.0.verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A stream's flow-control window; the connection window ([`super::admission`]) bounds what is in
/// flight across a station's streams.
const STREAM_WINDOW: u32 = 256 * 1024;

/// QUIC settings sized for many mostly idle stations: a connection window that holds a request
/// header until the upload gets a receive slot ([`super::admission`]), no datagrams, no
/// unidirectional streams, a bounded idle timeout.
pub fn transport_config(cfg: &IngestConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(cfg.max_streams_per_connection.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window(STREAM_WINDOW.into())
        .receive_window(super::admission::HEADER_WINDOW.into())
        .send_window(64 * 1024)
        .datagram_receive_buffer_size(None)
        .datagram_send_buffer_size(0)
        .max_idle_timeout(Some(
            std::time::Duration::from_secs(cfg.idle_timeout_secs)
                .try_into()
                .expect("valid idle timeout"),
        ));
    t
}

pub fn server_config(
    dir: &DataDir,
    cfg: &IngestConfig,
    tickets: Arc<TicketKeys>,
) -> Result<quinn::ServerConfig> {
    let quic = QuicServerConfig::try_from(server_tls_config(dir, tickets)?).map_err(tls_err)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(Arc::new(transport_config(cfg)));
    Ok(server)
}
