//! Station certificates renewed before they end: over the station's own authenticated
//! connection (a signing request with its heartbeat, the certificate in the acknowledgement,
//! stored durably by the station before it is used), or by an administrator's
//! `nachtwacht station renew`. The old certificate works until the new one is first used, and
//! not after; a revoked station's renewed certificate is refused too.

use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht::trust::pki::cert_fingerprint_pem;

/// (current, pending) certificate fingerprints of a station.
fn certificates(t: &TestServer, name: &str) -> (String, Option<String>) {
    t.ctx
        .db
        .lock()
        .query_row(
            "SELECT cert_sha256, pending_cert_sha256 FROM stations WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

fn stored_identity_cert(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("identity.toml")).unwrap();
    let table: toml::Table = text.parse().unwrap();
    table["cert_pem"].as_str().unwrap().to_string()
}

/// Whether a heartbeat with this station configuration is answered (refused: the connection is
/// closed, or the handshake fails).
async fn answered(station: &nachtwacht_station::StationConfig, t: &TestServer) -> bool {
    let Ok(conn) = raw_connect(station, t.server.quic_addr()).await else {
        return false;
    };
    let request = nachtwacht_wire::protocol::encode_heartbeat(&quiet_heartbeat(station)(None));
    raw_request(&conn, &request).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_renews_over_its_connection_and_its_old_certificate_ends_at_first_use() {
    let t = start_server(Config::default()).await;
    let (mut station, dir, _) = t.ankle_station("home-1", "AM-0001", 1, vec![]);
    let old = cert_fingerprint_pem(&station.cert_pem).unwrap();
    // Its two-year certificate is within the renewal period the station is given here.
    station.renew_before_days = 800;

    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert_eq!(report.acknowledged, 1, "{report:?}");
    // The station stored its new identity durably and forgot the pending key.
    assert!(dir.join("identity.toml").exists());
    assert!(!dir.join("renewal-key.pem").exists());
    let new = cert_fingerprint_pem(&stored_identity_cert(&dir)).unwrap();
    assert_ne!(new, old);
    // The server issued it and waits for its first use: both work meanwhile.
    assert_eq!(certificates(&t, "home-1"), (old.clone(), Some(new.clone())));
    assert!(
        answered(&station, &t).await,
        "the old certificate still works"
    );

    // The next pass connects with the new certificate: it becomes the current one.
    station.renew_before_days = 30;
    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert!(report.heartbeats >= 1, "{report:?}");
    assert_eq!(certificates(&t, "home-1"), (new.clone(), None));
    // From then on the old certificate is refused.
    assert!(
        !answered(&station, &t).await,
        "the old certificate after renewal"
    );
    let renewed = nachtwacht_station::renewal::current(&station, &dir).unwrap();
    assert!(answered(&renewed, &t).await);
    // Both steps are on the record.
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'station.renew'"),
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'station.certificate'"),
        1
    );
    // A certificate nearly a year from its end is not renewed again.
    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert!(report.heartbeats >= 1);
    assert_eq!(certificates(&t, "home-1"), (new, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrators_renewal_and_a_revoked_stations_renewed_certificate() {
    let t = start_server(Config::default()).await;
    let (station, dir, _) = t.ankle_station("home-2", "AM-0002", 1, vec![]);
    let old = cert_fingerprint_pem(&station.cert_pem).unwrap();
    // `nachtwacht station renew`, as the operator runs it (another process, same database).
    let out = dir.join("identity.toml");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["station", "renew", "--name", "home-2", "--out"])
        .arg(&out)
        .arg("--data-dir")
        .arg(t.ctx.dir.root())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let new = cert_fingerprint_pem(&stored_identity_cert(&dir)).unwrap();
    assert_eq!(certificates(&t, "home-2"), (old, Some(new.clone())));
    // The station picks the file up (it outlasts the configured certificate) and uses it.
    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert_eq!(report.acknowledged, 1, "{report:?}");
    assert_eq!(certificates(&t, "home-2"), (new, None));

    // A renewal pending when the station is revoked: neither certificate gets in, and both
    // serials are on the revocation list.
    let (mut third, third_dir, _) = t.ankle_station("home-3", "AM-0003", 1, vec![]);
    third.renew_before_days = 800;
    nachtwacht_station::run_once(&third, &third_dir)
        .await
        .unwrap();
    let renewed = nachtwacht_station::renewal::current(&third, &third_dir).unwrap();
    assert!(certificates(&t, "home-3").1.is_some());
    nachtwacht::registry::enroll::revoke_station(&t.ctx, "home-3", "test").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert!(
        !answered(&third, &t).await,
        "the old certificate of a revoked station"
    );
    assert!(
        !answered(&renewed, &t).await,
        "the renewed certificate of a revoked station"
    );
    let pem = std::fs::read_to_string(t.ctx.dir.crl()).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).unwrap();
    let listed: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|c| hex::encode(c.raw_serial()))
        .collect();
    let (current, pending): (String, String) = t
        .ctx
        .db
        .lock()
        .query_row(
            "SELECT cert_serial, pending_cert_serial FROM stations WHERE name = 'home-3'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    for serial in [current, pending] {
        assert!(listed.contains(&serial), "{serial} not in {listed:?}");
    }
}

/// `nachtwacht keys server-cert` replaces the server's certificate and key; the server uses them
/// from its next start, and stations connect to it as before (they trust the CA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_certificate_is_renewed_and_used_from_the_next_start() {
    let t = start_server(Config::default()).await;
    let before = std::fs::read_to_string(t.ctx.dir.server_cert()).unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["keys", "server-cert", "--data-dir"])
        .arg(t.ctx.dir.root())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let after = std::fs::read_to_string(t.ctx.dir.server_cert()).unwrap();
    assert_ne!(before, after);
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'keys.server-cert'"),
        1
    );
    let report = nachtwacht::ops::check::run(t.ctx.dir.root(), nachtwacht::base::time::now_ms());
    assert!(report.findings.is_empty(), "{report}");

    let TestServer { tmp, server, .. } = t;
    server.shutdown().await;
    let t = start_in(tmp).await;
    let (station, dir, _) = t.ankle_station("home-9", "AM-0009", 1, vec![]);
    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert_eq!(
        report.acknowledged, 1,
        "a station connects to the renewed certificate"
    );
}
