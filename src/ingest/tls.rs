//! Server TLS for the ingest: our certificate, client certificates required from the nachtwacht CA
//! and checked against its current revocation list, TLS 1.3 only, ALPN naming the protocol versions
//! this build speaks.

use std::path::Path;
use std::sync::Arc;

use nachtwacht_wire::protocol::alpn_ids;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::{Error, Result};
use crate::base::config::IngestConfig;
use crate::base::datadir::DataDir;

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

pub fn server_tls_config(dir: &DataDir) -> Result<rustls::ServerConfig> {
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
    Ok(tls)
}

/// QUIC settings sized for many mostly idle stations: a connection window that holds a request
/// header until the upload gets a receive slot ([`super::admission`]), no datagrams, no
/// unidirectional streams, a bounded idle timeout.
pub fn transport_config(cfg: &IngestConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(cfg.max_streams_per_connection.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((256u32 * 1024).into())
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

pub fn server_config(dir: &DataDir, cfg: &IngestConfig) -> Result<quinn::ServerConfig> {
    let quic = QuicServerConfig::try_from(server_tls_config(dir)?).map_err(tls_err)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(Arc::new(transport_config(cfg)));
    Ok(server)
}
