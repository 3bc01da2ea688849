//! Only enrolled stations with certificates from nachtwacht's CA get in: a client with a certificate
//! from another CA, without a certificate, with an unregistered certificate, or a revoked station
//! is refused, and nothing it sent is stored.

mod common;

use std::sync::Arc;

use common::*;
use nachtwacht::config::Config;
use nachtwacht::{enroll, pki};
use nachtwacht_station::seal::{parse_recipient, seal};
use nachtwacht_station::spool::Spool;
use nachtwacht_station::uploader::{client_tls_config, Uploader};
use nachtwacht_station::StationConfig;

/// Spools one bundle for `station` and tries to upload it once.
async fn try_upload(
    station: &StationConfig,
    uploader: Uploader,
    dir: &std::path::Path,
) -> Result<usize, String> {
    let content = nachtwacht_station::source::read_all(&station.source, dir).unwrap();
    let sealed = seal(
        &content[0],
        &parse_recipient(&station.server_age_recipient).unwrap(),
    )
    .unwrap();
    let spool = Spool::open(&station.spool_dir(dir)).unwrap();
    spool.put(&sealed).unwrap();
    let outcome = uploader.with_max_rounds(1).drain(&spool).await;
    assert_eq!(
        spool.pending().unwrap().len(),
        1,
        "a refused bundle stays in the station's spool"
    );
    outcome.map(|o| o.acknowledged).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_valid_enrolled_certificate_are_refused() {
    let t = start_server(Config::default()).await;

    // A certificate from another CA.
    let (mut foreign, dir, _) = t.ankle_station("foreign", "AM-1", 1, vec![]);
    let other_ca = pki::create_ca().unwrap();
    let other = pki::issue_station_cert(&other_ca, "foreign").unwrap();
    foreign.cert_pem = other.cert_pem;
    foreign.key_pem = other.key_pem;
    let r = try_upload(&foreign, Uploader::new(&foreign).unwrap(), &dir).await;
    assert!(r.is_err(), "foreign CA accepted: {r:?}");

    // No certificate at all.
    let (anon, dir, _) = t.ankle_station("anonymous", "AM-2", 1, vec![]);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(anon.ca_cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    use rustls::pki_types::pem::PemObject;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![nachtwacht_wire::protocol::ALPN.to_vec()];
    let r = try_upload(&anon, Uploader::with_tls(&anon, tls).unwrap(), &dir).await;
    assert!(r.is_err(), "certificate-less client accepted: {r:?}");

    // A certificate from our CA that was never registered to a station.
    let (mut unregistered, dir, _) = t.ankle_station("unregistered", "AM-3", 1, vec![]);
    let ca = pki::Issued {
        cert_pem: std::fs::read_to_string(t.ctx.dir.ca_cert()).unwrap(),
        key_pem: std::fs::read_to_string(t.ctx.dir.ca_key()).unwrap(),
    };
    let stray = pki::issue_station_cert(&ca, "unregistered").unwrap();
    unregistered.cert_pem = stray.cert_pem;
    unregistered.key_pem = stray.key_pem;
    let r = try_upload(&unregistered, Uploader::new(&unregistered).unwrap(), &dir).await;
    assert!(r.is_err(), "unregistered certificate accepted: {r:?}");

    // A revoked station, without restarting the server.
    let (revoked, dir, _) = t.ankle_station("revoked", "AM-4", 1, vec![]);
    enroll::revoke_station(&t.ctx, "revoked", "test").unwrap();
    let r = try_upload(&revoked, Uploader::new(&revoked).unwrap(), &dir).await;
    assert!(r.is_err(), "revoked station accepted: {r:?}");

    assert_eq!(
        t.count("SELECT count(*) FROM bundles"),
        0,
        "nothing from a refused client is stored"
    );

    // The control: a properly enrolled station on the same server gets in.
    let (good, dir, _) = t.ankle_station("good", "AM-5", 1, vec![]);
    assert!(client_tls_config(&good).is_ok());
    assert_eq!(try_upload_ok(&good, &dir).await, 1);
    t.server.shutdown().await;
}

async fn try_upload_ok(station: &StationConfig, dir: &std::path::Path) -> usize {
    nachtwacht_station::run_once(station, dir)
        .await
        .unwrap()
        .acknowledged
}
