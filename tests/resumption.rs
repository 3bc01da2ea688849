//! Stations resume their TLS sessions after a server restart (the ticket keys are durable), and a
//! revoked station's ticket gets it nowhere: the resumed handshake skips the certificate verifier,
//! so the ingest's own check after the handshake refuses it, and audits the refusal.
//!
//! Whether a handshake resumed is seen from this test's own station: a station checks the server's
//! certificate only in a full handshake (a resumed TLS 1.3 session sends no certificates either
//! way), so the station's verifier counts this test's full handshakes alone. The server's counters
//! are the process's, shared with every test running beside this one: they can only be checked to
//! have risen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht::base::metrics::metrics;
use nachtwacht::registry::enroll;
use nachtwacht_wire::protocol::encode_heartbeat;

/// Connects with one client configuration (so its session tickets are kept between connections)
/// and has a heartbeat answered; the error if the server refused.
async fn heartbeat_over(
    client: &quinn::ClientConfig,
    station: &nachtwacht_station::StationConfig,
    addr: std::net::SocketAddr,
) -> Result<nachtwacht_wire::Ack, String> {
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = endpoint
        .connect_with(client.clone(), addr, "localhost")
        .unwrap()
        .await
        .map_err(|e| e.to_string())?;
    let hb = encode_heartbeat(&quiet_heartbeat(station)(None));
    let ack = nachtwacht_station::uploader::exchange(&conn, hb, bytes::Bytes::new()).await;
    // Let the server's session tickets arrive before the connection goes.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    ack
}

/// The server's process-wide handshake counters: (full handshakes, resumptions).
fn server_counters() -> (u64, u64) {
    (
        metrics().tls_full_handshakes.get(),
        metrics().tls_resumptions.get(),
    )
}

/// The station's check of the server's certificate, counting how often it runs: once per full
/// handshake, never in a resumed one.
#[derive(Debug)]
struct CountedServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    checks: AtomicU64,
}

impl rustls::client::danger::ServerCertVerifier for CountedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The station's TLS configuration with its server check counted.
fn counted_client_tls(
    station: &nachtwacht_station::StationConfig,
) -> (rustls::ClientConfig, Arc<CountedServerVerifier>) {
    use rustls_pki_types::pem::PemObject;
    let mut tls = nachtwacht_station::uploader::client_tls_config(station).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(station.ca_cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(CountedServerVerifier {
        inner: rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider,
        )
        .build()
        .unwrap(),
        checks: AtomicU64::new(0),
    });
    tls.dangerous().set_certificate_verifier(verifier.clone());
    (tls, verifier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_resume_after_a_restart_and_a_revoked_station_cannot() {
    let t = start_server(Config::default()).await;
    let (station, _, _) = t.ankle_station("resumer", "AM-R1", 1, vec![]);
    let (tls, station_checks) = counted_client_tls(&station);
    let full_handshakes = || station_checks.checks.load(Ordering::SeqCst);
    let mut client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    client.transport_config(Arc::new(nachtwacht_station::uploader::client_transport()));

    // First contact: a full handshake, the server verifying the station's certificate.
    let before = server_counters();
    let ack = heartbeat_over(&client, &station, t.server.quic_addr()).await;
    assert_eq!(ack.unwrap().code, nachtwacht_wire::AckCode::Stored);
    assert_eq!(full_handshakes(), 1, "first contact is a full handshake");
    let first = server_counters();
    assert!(first.0 > before.0, "the server verified a certificate");

    // The server restarts on the same data directory (a new port, the same name): the station
    // resumes, no certificate is sent or verified.
    let TestServer { tmp, ctx, server } = t;
    server.shutdown().await;
    drop(ctx);
    let t = start_in(tmp).await;
    let ack = heartbeat_over(&client, &station, t.server.quic_addr()).await;
    assert_eq!(ack.unwrap().code, nachtwacht_wire::AckCode::Stored);
    assert_eq!(
        full_handshakes(),
        1,
        "the ticket of the server before the restart opened: the session resumed"
    );
    let resumed = server_counters();
    assert!(resumed.1 > first.1, "the server counted the resumption");

    // Revoked: the station still holds a ticket from the connection above, the handshake resumes,
    // and the ingest refuses the station after it.
    enroll::revoke_station(&t.ctx, "resumer", "test").unwrap();
    let refusals_before = refusals(&t.ctx).len();
    let r = heartbeat_over(&client, &station, t.server.quic_addr()).await;
    assert_eq!(
        full_handshakes(),
        1,
        "the revoked station resumed, without a certificate check"
    );
    assert!(server_counters().1 > resumed.1, "the server counted it");
    // The station sees its connection closed; why is in the audit log.
    r.expect_err("a revoked station's resumed session was served");
    let mut log = refusals(&t.ctx);
    for _ in 0..100 {
        if log.len() > refusals_before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        log = refusals(&t.ctx);
    }
    assert!(
        log[refusals_before..]
            .iter()
            .any(|r| r.contains("no enrolled, unrevoked station")),
        "{log:?}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM station_heartbeats"),
        2,
        "nothing from the revoked station was stored"
    );

    // The ticket keys are private and name at most two periods.
    let keys = std::fs::read_to_string(t.ctx.dir.keys().join("ticket-keys")).unwrap();
    assert!((1..=2).contains(&keys.lines().count()), "{keys}");
    t.server.shutdown().await;
}
