//! Only enrolled stations with valid certificates from nachtwacht's CA get in. Refused: a
//! certificate from another CA, no certificate, an expired certificate, a CA-issued certificate
//! never registered, a revoked station (revoked while the server runs: no restart), and a client
//! that speaks no protocol version the server knows. Every refusal is in the audit log with its
//! reason, and nothing a refused client sent is stored.

use std::sync::Arc;

use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht::{registry::enroll, trust::pki};
use nachtwacht_station::spool::Spool;
use nachtwacht_station::uploader::{client_tls_config, Uploader};
use nachtwacht_station::StationConfig;
use rustls::pki_types::pem::PemObject;

/// Spools one bundle for `station` and tries to upload it once.
async fn try_upload(
    station: &StationConfig,
    uploader: Uploader,
    dir: &std::path::Path,
) -> Result<usize, String> {
    let sealed = seal_all(station, dir).remove(0);
    let spool = Spool::open(&station.spool_dir(dir)).unwrap();
    spool.put(&sealed).unwrap();
    let outcome = uploader
        .with_max_failures(1)
        .drain(&spool, &quiet_heartbeat(station))
        .await;
    assert_eq!(
        spool.pending().unwrap().len(),
        1,
        "a refused bundle stays in the station's spool"
    );
    outcome.map(|o| o.acknowledged).map_err(|e| e.to_string())
}

fn ca_of(t: &TestServer) -> pki::Issued {
    pki::Issued {
        cert_pem: std::fs::read_to_string(t.ctx.dir.ca_cert()).unwrap(),
        key_pem: std::fs::read_to_string(t.ctx.dir.ca_key()).unwrap(),
    }
}

fn roots(station: &StationConfig) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(station.ca_cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// Waits until the audit log holds `n` refusals (they are written by the connection task).
async fn refusals_after(t: &TestServer, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let r = refusals(&t.ctx);
        if r.len() >= n {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    refusals(&t.ctx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_valid_enrolled_certificate_are_refused_and_audited() {
    let t = start_server(Config::default()).await;

    // A certificate from another CA.
    let (mut foreign, dir, _) = t.ankle_station("foreign", "AM-1", 1, vec![]);
    let other = pki::issue_station_cert(&pki::create_ca().unwrap(), "foreign").unwrap();
    foreign.cert_pem = other.cert_pem;
    foreign.key_pem = other.key_pem;
    let r = try_upload(&foreign, Uploader::new(&foreign).unwrap(), &dir).await;
    assert!(r.is_err(), "foreign CA accepted: {r:?}");
    let log = refusals_after(&t, 1).await;
    assert!(log[0].contains("handshake failed"), "{log:?}");

    // No certificate at all.
    let (anon, dir, _) = t.ankle_station("anonymous", "AM-2", 1, vec![]);
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots(&anon))
    .with_no_client_auth();
    tls.alpn_protocols = nachtwacht_wire::protocol::alpn_ids();
    let r = try_upload(&anon, Uploader::with_tls(&anon, tls).unwrap(), &dir).await;
    assert!(r.is_err(), "certificate-less client accepted: {r:?}");
    let log = refusals_after(&t, 2).await;
    assert!(log[1].to_lowercase().contains("certificate"), "{log:?}");

    // An expired certificate from our CA, registered to a station.
    let (mut expired, dir, _) = t.ankle_station("expired", "AM-6", 1, vec![]);
    let now_s = nachtwacht::base::time::now_ms() / 1000;
    let (old, _) = pki::issue_station_cert_with(
        &ca_of(&t),
        "expired",
        pki::Validity::Window {
            not_before: now_s - 10 * 86_400,
            not_after: now_s - 86_400,
        },
    )
    .unwrap();
    t.ctx
        .db
        .lock()
        .execute(
            "UPDATE stations SET cert_sha256 = ?1 WHERE name = 'expired'",
            [old.fingerprint().unwrap()],
        )
        .unwrap();
    expired.cert_pem = old.cert_pem;
    expired.key_pem = old.key_pem;
    let r = try_upload(&expired, Uploader::new(&expired).unwrap(), &dir).await;
    assert!(r.is_err(), "expired certificate accepted: {r:?}");
    let log = refusals_after(&t, 3).await;
    assert!(log[2].to_lowercase().contains("expired"), "{log:?}");

    // A certificate from our CA that was never registered to a station.
    let (mut unregistered, dir, _) = t.ankle_station("unregistered", "AM-3", 1, vec![]);
    let stray = pki::issue_station_cert(&ca_of(&t), "unregistered").unwrap();
    unregistered.cert_pem = stray.cert_pem;
    unregistered.key_pem = stray.key_pem;
    let r = try_upload(&unregistered, Uploader::new(&unregistered).unwrap(), &dir).await;
    assert!(r.is_err(), "unregistered certificate accepted: {r:?}");
    let log = refusals_after(&t, 4).await;
    assert!(log[3].contains("no enrolled"), "{log:?}");

    // A client offering only a protocol version the server does not speak.
    let (good, _, _) = t.ankle_station("future", "AM-7", 1, vec![]);
    let mut tls = client_tls_config(&good).unwrap();
    tls.alpn_protocols = vec![b"nachtwacht/99".to_vec()];
    let r = raw_connect_with(tls, t.server.quic_addr()).await;
    assert!(r.is_err(), "unknown protocol version accepted");
    let log = refusals_after(&t, 5).await;
    assert!(
        log[4].to_lowercase().contains("application protocol")
            || log[4].contains("alpn")
            || log[4].contains("handshake failed"),
        "{log:?}"
    );

    assert_eq!(
        t.count("SELECT count(*) FROM bundles"),
        0,
        "nothing from a refused client is stored"
    );

    // The control: a properly enrolled station on the same server gets in.
    let (good, dir, _) = t.ankle_station("good", "AM-5", 1, vec![]);
    assert_eq!(
        nachtwacht_station::run_once(&good, &dir)
            .await
            .unwrap()
            .acknowledged,
        1
    );
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_takes_effect_on_the_running_server() {
    let t = start_server(Config::default()).await;
    let (station, dir, _) = t.ankle_station("soon-revoked", "AM-8", 2, vec![]);
    let sealed = seal_all(&station, &dir);

    // Connected and uploading before the revocation.
    let conn = raw_connect(&station, t.server.quic_addr()).await.unwrap();
    let ack = raw_request(&conn, &upload_request(&station.name, 1, &sealed[0]))
        .await
        .unwrap();
    assert_eq!(ack.code, nachtwacht_wire::AckCode::Stored);

    enroll::revoke_station(&t.ctx, "soon-revoked", "test").unwrap();
    let crl = std::fs::read_to_string(t.ctx.dir.crl()).unwrap();
    assert!(crl.contains("BEGIN X509 CRL"));

    // The open connection is closed within the reload interval...
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), conn.closed()).await;
    let reason = closed
        .expect("revoked station's connection closed")
        .to_string();
    assert!(reason.contains("revoked"), "{reason}");
    // ...and a new connection is refused: by the verifier, which now has the new list, or, as here
    // where the station offers the session ticket of its connection before, by the check after
    // the resumed handshake (tests/resumption.rs).
    let again = raw_connect(&station, t.server.quic_addr()).await;
    let refused = match again {
        Err(e) => e,
        Ok(c) => c.closed().await.to_string(),
    };
    assert!(!refused.is_empty());
    let log = refusals_after(&t, 1).await;
    assert!(
        log.iter().any(|r| r.to_lowercase().contains("revoked")),
        "{log:?}"
    );
    assert_eq!(t.count("SELECT count(*) FROM bundles"), 1);
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'station.revoke'"),
        1
    );
    t.server.shutdown().await;
}
