//! The upload protocol against a real server over real QUIC: stream-level refusals that leave the
//! connection and other stations alone, early duplicates, backpressure and rate limits answered with
//! `busy` + retry-after, per-station connection limits, receive slots that make the rest wait their
//! turn, graceful shutdown that finishes uploads under
//! way, failover to a second address, heartbeats and the communication alerts they raise, and the
//! chain of custody (signature check, evidence copy and its retention).

use std::time::Duration;

use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht_wire::protocol::{encode_heartbeat, DeviceStatus, Heartbeat, SpoolStatus};
use nachtwacht_wire::AckCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_requests_fail_their_stream_only() {
    let mut config = Config::default();
    config.ingest.max_bundle_bytes = 1 << 20;
    config.ingest.max_in_flight_bytes = 1 << 20;
    // The other tests run the ingest on its default one thread; this one on a multi-threaded
    // runtime of its own.
    config.ingest.threads = 2;
    let t = start_server(config).await;
    let (a, a_dir, _) = t.ankle_station("home-a", "AM-A", 2, vec![]);
    let (b, b_dir, _) = t.ankle_station("home-b", "AM-B", 1, vec![]);
    let sealed = seal_all(&a, &a_dir);
    let conn = raw_connect(&a, t.server.quic_addr()).await.unwrap();

    let garbage = raw_request(&conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(garbage.code, AckCode::Rejected);
    assert!(garbage.reason.unwrap().contains("bad magic"));

    // A header announcing more than the limit is refused before any body is read.
    let mut huge = sealed[0].clone();
    huge.ciphertext = vec![0u8; (1 << 20) + 1];
    let ack = raw_request(&conn, &upload_request(&a.name, 1, &huge))
        .await
        .unwrap();
    assert_eq!(ack.code, AckCode::Rejected);
    assert!(
        ack.reason.unwrap().contains("exceeds the limit"),
        "oversize named"
    );

    // A header naming another station.
    let ack = raw_request(&conn, &upload_request("home-b", 1, &sealed[0]))
        .await
        .unwrap();
    assert_eq!(ack.code, AckCode::Rejected);
    assert!(ack.reason.unwrap().contains("certificate belongs to"));

    // Meanwhile another station uploads normally...
    let report = nachtwacht_station::run_once(&b, &b_dir).await.unwrap();
    assert_eq!(report.acknowledged, 1);
    // ...and the same connection still carries a good upload, then an early duplicate.
    let ack = raw_request(&conn, &upload_request(&a.name, 1, &sealed[0]))
        .await
        .unwrap();
    assert_eq!(ack.code, AckCode::Stored);
    let ack = raw_request(&conn, &upload_request(&a.name, 1, &sealed[0]))
        .await
        .unwrap();
    assert_eq!(ack.code, AckCode::Duplicate);
    // The same id with other bytes is refused for good.
    let mut forged = sealed[1].clone();
    forged.bundle_id = sealed[0].bundle_id;
    let ack = raw_request(&conn, &upload_request(&a.name, 2, &forged))
        .await
        .unwrap();
    assert_eq!(ack.code, AckCode::Rejected);
    assert_eq!(t.count("SELECT count(*) FROM bundles"), 2);
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_rate_and_connection_limits_answer_busy_or_close() {
    let mut config = Config::default();
    config.ingest.max_bundles_per_minute = 2;
    config.ingest.max_connections_per_station = 1;
    let t = start_server(config).await;
    let (s, dir, _) = t.ankle_station("home-r", "AM-R", 4, vec![]);
    let sealed = seal_all(&s, &dir);
    let conn = raw_connect(&s, t.server.quic_addr()).await.unwrap();
    for (i, b) in sealed.iter().take(2).enumerate() {
        let ack = raw_request(&conn, &upload_request(&s.name, i as u64 + 1, b))
            .await
            .unwrap();
        assert_eq!(ack.code, AckCode::Stored);
    }
    let ack = raw_request(&conn, &upload_request(&s.name, 3, &sealed[2]))
        .await
        .unwrap();
    assert_eq!(ack.code, AckCode::Busy);
    let wait = ack.retry_after_ms.unwrap();
    assert!((1_000..=30_000).contains(&wait), "retry after {wait} ms");
    assert!(ack.reason.unwrap().contains("rate"));

    // A second connection of the same station is closed with a reason.
    let second = raw_connect(&s, t.server.quic_addr()).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), second.closed())
        .await
        .unwrap();
    assert!(
        reason.to_string().contains("too many connections"),
        "{reason}"
    );
    drop(conn);
    t.server.shutdown().await;

    // Spool high-water mark: the second bundle waits until the decoder has taken the first.
    let mut config = Config::default();
    let one_bundle = sealed[0].ciphertext.len() as u64;
    config.ingest.spool_high_water_bytes = one_bundle * 3 / 2;
    let t = start_server(config).await;
    let (s, dir, _) = t.ankle_station("home-h", "AM-H", 2, vec![]);
    let sealed = seal_all(&s, &dir);
    let conn = raw_connect(&s, t.server.quic_addr()).await.unwrap();
    let ack = raw_request(&conn, &upload_request(&s.name, 1, &sealed[0]))
        .await
        .unwrap();
    assert_eq!(ack.code, AckCode::Stored);
    let ack = raw_request(&conn, &upload_request(&s.name, 2, &sealed[1]))
        .await
        .unwrap();
    assert_eq!(ack.code, AckCode::Busy);
    assert!(ack.reason.unwrap().contains("high-water"));
    t.server.decode_now().await;
    // The backlog gauge refreshes every second.
    let mut stored = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ack = raw_request(&conn, &upload_request(&s.name, 2, &sealed[1]))
            .await
            .unwrap();
        if ack.code == AckCode::Stored {
            stored = true;
            break;
        }
    }
    assert!(stored, "accepted again once the backlog was decoded");
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_receive_slots_wait_their_turn_and_all_complete() {
    let mut config = Config::default();
    config.ingest.max_receiving_uploads = 1;
    let t = start_server(config).await;
    let (a, a_dir, _) = t.ankle_station("home-slot-a", "AM-SA", 2, vec![]);
    let (b, b_dir, _) = t.ankle_station("home-slot-b", "AM-SB", 1, vec![]);
    let a_sealed = seal_all(&a, &a_dir);
    let b_sealed = seal_all(&b, &b_dir);

    // Station A holds the only slot: header and all but the last bytes of its body sent.
    let a_conn = raw_connect(&a, t.server.quic_addr()).await.unwrap();
    let request = upload_request(&a.name, 1, &a_sealed[0]);
    let (mut send, mut recv) = a_conn.open_bi().await.unwrap();
    let held = request.len() - 16;
    send.write_all(&request[..held]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Station B, and a second upload on A's own connection, wait for it.
    let b_conn = raw_connect(&b, t.server.quic_addr()).await.unwrap();
    let b_request = upload_request(&b.name, 1, &b_sealed[0]);
    let b_upload = tokio::spawn(async move { raw_request(&b_conn, &b_request).await });
    let a_second_request = upload_request(&a.name, 2, &a_sealed[1]);
    let a_conn2 = a_conn.clone();
    let a_second = tokio::spawn(async move { raw_request(&a_conn2, &a_second_request).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b_upload.is_finished(), "B waits while A holds the slot");
    assert!(!a_second.is_finished(), "so does A's second upload");
    assert_eq!(t.count("SELECT count(*) FROM bundles"), 0);

    // A finishes; the slot passes on and every upload is stored.
    send.write_all(&request[held..]).await.unwrap();
    send.finish().unwrap();
    let reply = recv.read_to_end(8192).await.unwrap();
    let ack = nachtwacht_wire::protocol::decode_ack(&reply).unwrap();
    assert_eq!(ack.code, AckCode::Stored);
    for waiting in [b_upload, a_second] {
        let ack = tokio::time::timeout(Duration::from_secs(20), waiting)
            .await
            .expect("a waiting upload gets its turn")
            .unwrap()
            .unwrap();
        assert_eq!(ack.code, AckCode::Stored);
    }
    assert_eq!(t.count("SELECT count(*) FROM bundles"), 3);
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_upload_can_send_no_more_than_its_header_window() {
    use nachtwacht_wire::protocol::encode_upload_head;
    use nachtwacht_wire::{BundleId, UploadHeader};
    let mut config = Config::default();
    config.ingest.max_receiving_uploads = 1;
    let t = start_server(config).await;
    let (a, a_dir, _) = t.ankle_station("home-win-a", "AM-WA", 1, vec![]);
    let (b, _, _) = t.ankle_station("home-win-b", "AM-WB", 1, vec![]);
    let a_sealed = seal_all(&a, &a_dir).remove(0);

    // A takes the only slot and holds it.
    let a_conn = raw_connect(&a, t.server.quic_addr()).await.unwrap();
    let request = upload_request(&a.name, 1, &a_sealed);
    let (mut a_send, mut a_recv) = a_conn.open_bi().await.unwrap();
    let held = request.len() - 16;
    a_send.write_all(&request[..held]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // B announces 256 KiB (the ingest checks digest and size, not content) and tries to send it
    // all: flow control stops it after about the header window (8 KiB), not at the 256 KiB stream
    // window.
    let body: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let header = UploadHeader::for_ciphertext(BundleId([0xb0; 16]), &b.name, 1, &body);
    let mut b_request = encode_upload_head(&header);
    b_request.extend_from_slice(&body);
    let b_conn = raw_connect(&b, t.server.quic_addr()).await.unwrap();
    let (mut b_send, mut b_recv) = b_conn.open_bi().await.unwrap();
    // `write` reports exactly what was taken; a write still pending after 300 ms is blocked.
    let mut sent = 0;
    while sent < b_request.len() {
        match tokio::time::timeout(Duration::from_millis(300), b_send.write(&b_request[sent..]))
            .await
        {
            Ok(n) => sent += n.unwrap(),
            Err(_) => break,
        }
    }
    assert!(
        sent <= 16 * 1024,
        "a station waiting for a slot sent {sent} bytes"
    );

    // A finishes; B gets the slot and its window, and the rest goes through.
    a_send.write_all(&request[held..]).await.unwrap();
    a_send.finish().unwrap();
    let ack = nachtwacht_wire::protocol::decode_ack(&a_recv.read_to_end(8192).await.unwrap());
    assert_eq!(ack.unwrap().code, AckCode::Stored);
    tokio::time::timeout(Duration::from_secs(20), async {
        b_send.write_all(&b_request[sent..]).await.unwrap();
        b_send.finish().unwrap();
        let ack = nachtwacht_wire::protocol::decode_ack(&b_recv.read_to_end(8192).await.unwrap())
            .unwrap();
        assert_eq!(ack.code, AckCode::Stored, "{:?}", ack.reason);
    })
    .await
    .expect("the waiting upload completes once it has a slot");
    assert_eq!(t.count("SELECT count(*) FROM bundles"), 2);
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_an_upload_under_way() {
    let t = start_server(Config::default()).await;
    let (s, dir, _) = t.ankle_station("home-d", "AM-D", 1, vec![]);
    let sealed = seal_all(&s, &dir).remove(0);
    let request = upload_request(&s.name, 1, &sealed);
    let conn = raw_connect(&s, t.server.quic_addr()).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let half = request.len() / 2;
    send.write_all(&request[..half]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let TestServer { tmp, ctx, server } = t;
    let shutting_down = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !shutting_down.is_finished(),
        "shutdown waits for the upload"
    );
    send.write_all(&request[half..]).await.unwrap();
    send.finish().unwrap();
    let reply = recv.read_to_end(8192).await.unwrap();
    let ack = nachtwacht_wire::protocol::decode_ack(&reply).unwrap();
    assert_eq!(ack.code, AckCode::Stored);
    tokio::time::timeout(Duration::from_secs(10), shutting_down)
        .await
        .unwrap()
        .unwrap();
    let n: i64 = ctx
        .db
        .lock()
        .query_row("SELECT count(*) FROM bundles", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_fails_over_to_its_second_address() {
    let t = start_server(Config::default()).await;
    let (mut s, dir, _) = t.ankle_station("home-f", "AM-F", 2, vec![]);
    // Nothing listens on the first address.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.servers = vec![
        dead.local_addr().unwrap().to_string(),
        t.server.quic_addr().to_string(),
    ];
    drop(dead);
    let uploader = nachtwacht_station::uploader::Uploader::new(&s)
        .unwrap()
        .with_connect_timeout(Duration::from_secs(1));
    let report = nachtwacht_station::run_with(&s, &dir, uploader)
        .await
        .unwrap();
    assert_eq!(
        (report.sealed, report.acknowledged, report.left_in_spool),
        (2, 2, 0)
    );
    assert_eq!(report.heartbeats, 1);
    assert!(report.clock_offset_ms.unwrap().abs() < 5_000);
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_recorded_and_raise_communication_alerts() {
    let t = start_server(Config::default()).await;
    let (s, dir, person) = t.ankle_station("home-c", "AM-C", 1, vec![]);
    nachtwacht::registry::enroll::link_station(&t.ctx, "home-c", "CASE-home-c", "test").unwrap();
    // A pass sends a heartbeat on its own.
    nachtwacht_station::run_once(&s, &dir).await.unwrap();
    assert_eq!(t.count("SELECT count(*) FROM station_heartbeats"), 1);
    let connected: String = t
        .ctx
        .db
        .lock()
        .query_row("SELECT devices FROM station_heartbeats", [], |r| r.get(0))
        .unwrap();
    assert!(connected.contains("\"connected\":true"), "{connected}");

    // Then the wearable drops off and the station's clock runs 10 minutes fast.
    let hb = Heartbeat {
        station: s.name.clone(),
        sent_at_ms: nachtwacht::base::time::now_ms(),
        clock_offset_ms: Some(600_000),
        spool: SpoolStatus {
            pending_bundles: 0,
            pending_bytes: 0,
            capacity_bytes: 1 << 30,
            full: false,
        },
        devices: vec![DeviceStatus {
            serial: "AM-C".into(),
            connected: false,
            battery_percent: Some(3),
            last_reading_ms: None,
        }],
        renewal_csr: None,
    };
    let conn = raw_connect(&s, t.server.quic_addr()).await.unwrap();
    let ack = raw_request(&conn, &encode_heartbeat(&hb)).await.unwrap();
    assert_eq!(ack.code, AckCode::Stored);
    let new =
        nachtwacht::evaluate::communication::run(&t.ctx, nachtwacht::base::time::now_ms()).unwrap();
    assert_eq!(new, 2);
    let kinds: Vec<String> = {
        let db = t.ctx.db.lock();
        let mut stmt = db
            .prepare("SELECT kind FROM alerts WHERE person_id = ?1 ORDER BY kind")
            .unwrap();

        stmt.query_map([person], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(kinds, vec!["clock-drift", "device-disconnected"]);
    // Re-running raises nothing twice; two hours of silence raises communication-lost.
    assert_eq!(
        nachtwacht::evaluate::communication::run(&t.ctx, nachtwacht::base::time::now_ms()).unwrap(),
        0
    );
    assert_eq!(
        nachtwacht::evaluate::communication::run(
            &t.ctx,
            nachtwacht::base::time::now_ms() + 2 * 3_600_000
        )
        .unwrap(),
        1
    );
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_are_verified_kept_as_evidence_and_pruned_after_retention() {
    let t = start_server(Config::default()).await;
    let (s, dir, _) = t.ankle_station("home-e", "AM-E", 2, vec![]);
    let mut forger = s.clone();
    let (other_key, _) = nachtwacht_station::seal::new_signing_key().unwrap();
    forger.signing_key_pkcs8 = other_key;
    let genuine = seal_all(&s, &dir);
    let forged = seal_all(&forger, &dir);
    let conn = raw_connect(&s, t.server.quic_addr()).await.unwrap();
    assert_eq!(
        raw_request(&conn, &upload_request(&s.name, 1, &genuine[0]))
            .await
            .unwrap()
            .code,
        AckCode::Stored
    );
    assert_eq!(
        raw_request(&conn, &upload_request(&s.name, 2, &forged[1]))
            .await
            .unwrap()
            .code,
        AckCode::Stored
    );
    t.server.decode_now().await;

    let (state, signed_by): (String, Option<String>) = t
        .ctx
        .db
        .lock()
        .query_row(
            "SELECT state, signed_by FROM bundles WHERE bundle_id = ?1",
            [genuine[0].bundle_id.to_hex()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, "processed");
    let key: String = t
        .ctx
        .db
        .lock()
        .query_row(
            "SELECT signing_public_key FROM stations WHERE name = 'home-e'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(signed_by, Some(key));
    let (state, reason): (String, String) = t
        .ctx
        .db
        .lock()
        .query_row(
            "SELECT state, reason FROM bundles WHERE bundle_id = ?1",
            [forged[1].bundle_id.to_hex()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, "quarantined");
    assert!(reason.contains("signature does not verify"), "{reason}");

    // The original ciphertext is kept, byte for byte, out of the spool.
    let received: i64 = t
        .ctx
        .db
        .lock()
        .query_row(
            "SELECT received_at_ms FROM bundles WHERE bundle_id = ?1",
            [genuine[0].bundle_id.to_hex()],
            |r| r.get(0),
        )
        .unwrap();
    use nachtwacht::base::blobs::Key;
    let id = &genuine[0].bundle_id;
    let evidence = t.ctx.blobs.get(&Key::evidence(id, received)).unwrap();
    assert_eq!(evidence.as_ref(), Some(&genuine[0].ciphertext));
    // Out of the spool: a segment none of whose bundles waits is deleted, an object moved.
    let spooled = nachtwacht::spool::location(&t.ctx.db.lock(), id)
        .unwrap()
        .unwrap();
    assert_eq!(spooled.read(&t.ctx.blobs).unwrap(), None, "{spooled:?}");
    // Every stored row names its bundle.
    let rows: i64 = t
        .ctx
        .db
        .lock()
        .query_row(
            "SELECT rows_stored FROM bundles WHERE bundle_id = ?1",
            [genuine[0].bundle_id.to_hex()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 48);

    // Within retention nothing goes; after it, the copy is deleted and that is recorded.
    assert_eq!(
        nachtwacht::decode::prune_evidence(
            &t.ctx,
            nachtwacht::base::time::now_ms(),
            1,
            &Default::default(),
            false
        )
        .unwrap(),
        0
    );
    assert_eq!(
        nachtwacht::decode::prune_evidence(
            &t.ctx,
            nachtwacht::base::time::now_ms() + 2 * 86_400_000,
            1,
            &Default::default(),
            false
        )
        .unwrap(),
        1
    );
    assert!(!t.ctx.blobs.exists(&Key::evidence(id, received)).unwrap());
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE evidence_pruned_at_ms IS NOT NULL"),
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'evidence.prune'"),
        1
    );
    t.server.shutdown().await;
}
