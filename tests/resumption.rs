//! Stations resume their TLS sessions after a server restart (the ticket keys are durable), and a
//! revoked station's ticket gets it nowhere: the resumed handshake skips the certificate verifier,
//! so the ingest's own check after the handshake refuses it, and audits the refusal.
//!
//! One test in this file: it reads the process's handshake counters.

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

fn counters() -> (u64, u64) {
    (
        metrics().tls_full_handshakes.get(),
        metrics().tls_resumptions.get(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_resume_after_a_restart_and_a_revoked_station_cannot() {
    let t = start_server(Config::default()).await;
    let (station, _, _) = t.ankle_station("resumer", "AM-R1", 1, vec![]);
    let tls = nachtwacht_station::uploader::client_tls_config(&station).unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    client.transport_config(Arc::new(nachtwacht_station::uploader::client_transport()));

    // First contact: a full handshake.
    let before = counters();
    let ack = heartbeat_over(&client, &station, t.server.quic_addr()).await;
    assert_eq!(ack.unwrap().code, nachtwacht_wire::AckCode::Stored);
    let first = counters();
    assert_eq!(
        first.0,
        before.0 + 1,
        "first contact verifies the certificate"
    );
    assert_eq!(first.1, before.1, "nothing to resume on first contact");

    // The server restarts on the same data directory (a new port, the same name): the station
    // resumes, the certificate is not verified again.
    let TestServer { tmp, ctx, server } = t;
    server.shutdown().await;
    drop(ctx);
    let t = start_in(tmp).await;
    let ack = heartbeat_over(&client, &station, t.server.quic_addr()).await;
    assert_eq!(ack.unwrap().code, nachtwacht_wire::AckCode::Stored);
    let resumed = counters();
    assert_eq!(
        resumed.0, first.0,
        "a resumed session verifies no certificate"
    );
    assert_eq!(
        resumed.1,
        first.1 + 1,
        "the ticket of the server before the restart opened"
    );

    // Revoked: the station still holds a ticket from the connection above, the handshake resumes,
    // and the ingest refuses the station after it.
    enroll::revoke_station(&t.ctx, "resumer", "test").unwrap();
    let refusals_before = refusals(&t.ctx).len();
    let r = heartbeat_over(&client, &station, t.server.quic_addr()).await;
    let refused = counters();
    assert_eq!(refused.1, resumed.1 + 1, "the revoked station resumed");
    assert_eq!(refused.0, resumed.0, "...without a certificate check");
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
