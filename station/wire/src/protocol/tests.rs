use super::reader::RequestReader;
use super::*;

fn header(ciphertext: &[u8]) -> UploadHeader {
    UploadHeader::for_ciphertext(BundleId([1; 16]), "home-1", 42, ciphertext)
}

fn request(ciphertext: &[u8]) -> Vec<u8> {
    let mut bytes = encode_upload_head(&header(ciphertext));
    bytes.extend_from_slice(ciphertext);
    bytes
}

fn read_all(bytes: &[u8], chunk: usize) -> Result<reader::Request> {
    let mut r = RequestReader::new(PROTOCOL_VERSION, 1 << 20);
    for c in bytes.chunks(chunk.max(1)) {
        r.feed(c)?;
    }
    r.finish()
}

/// The body is kept as the transport's chunks where they are packet-sized: those are slices of
/// the buffer that was fed, not copies. Short ones (here the first, after the header, and the
/// last) are copied, in order.
#[test]
fn fed_bytes_become_the_body_without_a_copy_unless_short() {
    let body: Vec<u8> = (0..20_000u32).map(|i| (i * 13) as u8).collect();
    let bytes = bytes::Bytes::from(request(&body));
    let head_len = bytes.len() - body.len();
    let mut r = RequestReader::new(PROTOCOL_VERSION, 1 << 20);
    // The first chunk ends inside the body: its tail (100 bytes) is body, its head the header.
    let split = head_len + 100;
    assert!(r.feed_bytes(bytes.slice(..split)).unwrap());
    for start in (split..bytes.len()).step_by(1_400) {
        let end = (start + 1_400).min(bytes.len());
        r.feed_bytes(bytes.slice(start..end)).unwrap();
    }
    let request = r.finish().unwrap();
    assert_eq!(request.body, body);
    let fed = bytes.as_ptr_range();
    let chunks = request.body.chunks();
    let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
    // 100 bytes copied, then 14 packet-sized chunks kept, then the 300-byte tail copied.
    assert_eq!(chunks.len(), 16, "{sizes:?}");
    assert!(!fed.contains(&chunks[0].as_ptr()), "a short chunk was kept");
    for chunk in &chunks[1..15] {
        assert!(
            fed.contains(&chunk.as_ptr()),
            "a packet-sized chunk was copied"
        );
    }
    assert!(
        !fed.contains(&chunks[15].as_ptr()),
        "a short chunk was kept"
    );
}

/// A peer sending a body a byte at a time holds no fed buffer alive: the body is one copy.
#[test]
fn a_body_fed_in_tiny_chunks_is_copied_into_one() {
    let body = b"ciphertext bytes".repeat(200);
    let bytes = bytes::Bytes::from(request(&body));
    let head_len = bytes.len() - body.len();
    let mut r = RequestReader::new(PROTOCOL_VERSION, 1 << 20);
    assert!(r.feed_bytes(bytes.slice(..head_len)).unwrap());
    for i in head_len..bytes.len() {
        r.feed_bytes(bytes.slice(i..i + 1)).unwrap();
    }
    let request = r.finish().unwrap();
    assert_eq!(request.body, body);
    assert_eq!(request.body.chunks().len(), 1);
    assert!(!bytes
        .as_ptr_range()
        .contains(&request.body.chunks()[0].as_ptr()));
}

#[test]
fn a_request_reads_the_same_whatever_the_chunking() {
    let body = b"ciphertext bytes".repeat(50);
    let whole = read_all(&request(&body), usize::MAX).unwrap();
    assert_eq!(whole.head, RequestHead::Upload(header(&body)));
    assert_eq!(whole.body, body);
    for chunk in [1, 3, 9, 10, 11, 64] {
        assert_eq!(
            read_all(&request(&body), chunk).unwrap(),
            whole,
            "chunk {chunk}"
        );
    }
}

#[test]
fn the_header_is_reported_before_the_body_arrives() {
    let body = vec![7u8; 1000];
    let bytes = request(&body);
    let head_len = bytes.len() - body.len();
    let mut r = RequestReader::new(PROTOCOL_VERSION, 1 << 20);
    assert!(!r.feed(&bytes[..head_len - 1]).unwrap());
    assert!(r.head().is_none());
    assert!(r.feed(&bytes[head_len - 1..head_len + 10]).unwrap());
    assert_eq!(r.head().unwrap().bundle_id(), Some(BundleId([1; 16])));
    assert_eq!(r.body_received(), 10);
}

#[test]
fn the_body_is_hashed_as_it_arrives_and_checked_at_the_end() {
    let body: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let bytes = request(&body);
    let head_len = bytes.len() - body.len();
    for flip in [None, Some(head_len), Some(bytes.len() - 1)] {
        let mut bytes = bytes.clone();
        if let Some(i) = flip {
            bytes[i] ^= 1;
        }
        let mut r = RequestReader::new(PROTOCOL_VERSION, 1 << 20);
        assert!(r.feed(&bytes[..head_len]).unwrap());
        for c in bytes[head_len..].chunks(333) {
            r.feed(c).unwrap();
        }
        match flip {
            None => assert_eq!(r.finish().unwrap().body, body),
            Some(_) => assert_eq!(r.finish(), Err(ProtocolError::DigestMismatch)),
        }
    }
}

#[test]
fn heartbeats_round_trip_and_carry_no_body() {
    let hb = Heartbeat {
        station: "home-1".into(),
        sent_at_ms: 5,
        clock_offset_ms: Some(-1200),
        spool: SpoolStatus {
            pending_bundles: 3,
            pending_bytes: 3000,
            capacity_bytes: 1 << 30,
            full: false,
        },
        devices: vec![DeviceStatus {
            serial: "AM-1".into(),
            connected: true,
            battery_percent: Some(80),
            last_reading_ms: Some(4),
        }],
        renewal_csr: None,
    };
    let req = read_all(&encode_heartbeat(&hb), 7).unwrap();
    assert_eq!(req.head, RequestHead::Heartbeat(hb.clone()));
    let mut with_body = encode_heartbeat(&hb);
    with_body.push(0);
    assert_eq!(
        read_all(&with_body, 100),
        Err(ProtocolError::TrailingBytes { expected: 0 })
    );
}

#[test]
fn garbage_and_oversize_are_refused_with_a_reason() {
    assert_eq!(
        read_all(b"GET / HTTP/1.1\r\n\r\n", 100),
        Err(ProtocolError::BadMagic)
    );
    let mut other_version = request(b"x");
    other_version[4] = 9;
    assert_eq!(
        read_all(&other_version, 100),
        Err(ProtocolError::VersionMismatch {
            got: 9,
            negotiated: PROTOCOL_VERSION
        })
    );
    let mut unknown_kind = request(b"x");
    unknown_kind[5] = 7;
    assert_eq!(
        read_all(&unknown_kind, 100),
        Err(ProtocolError::UnknownKind(7))
    );

    let mut huge_header = request(b"x");
    huge_header[6..10].copy_from_slice(&(MAX_HEADER_LEN as u32 + 1).to_le_bytes());
    assert!(matches!(
        read_all(&huge_header, 100),
        Err(ProtocolError::TooLarge { .. })
    ));

    let big = vec![0u8; 2 << 20];
    assert_eq!(
        read_all(&request(&big), 4096),
        Err(ProtocolError::TooLarge {
            len: 2 << 20,
            max: 1 << 20
        })
    );

    let mut bad_json = encode_head(RequestKind::Upload, b"{\"bundle_id\":".to_vec());
    bad_json.extend_from_slice(b"rest");
    assert!(matches!(
        read_all(&bad_json, 100),
        Err(ProtocolError::Malformed(_))
    ));
}

#[test]
fn truncation_and_damage_are_transit_faults_and_trailing_bytes_are_not() {
    let body = vec![5u8; 100];
    let bytes = request(&body);
    let truncated = read_all(&bytes[..bytes.len() - 1], 100).unwrap_err();
    assert_eq!(
        truncated,
        ProtocolError::Truncated {
            expected: 100,
            got: 99
        }
    );
    assert!(truncated.is_transit_damage());

    let mut damaged = bytes.clone();
    *damaged.last_mut().unwrap() ^= 1;
    let e = read_all(&damaged, 100).unwrap_err();
    assert_eq!(e, ProtocolError::DigestMismatch);
    assert_eq!(Ack::for_protocol_error(None, &e, 0).code, AckCode::Busy);

    let mut trailing = bytes.clone();
    trailing.push(0);
    let e = read_all(&trailing, 100).unwrap_err();
    assert_eq!(e, ProtocolError::TrailingBytes { expected: 100 });
    assert_eq!(Ack::for_protocol_error(None, &e, 0).code, AckCode::Rejected);
}

#[test]
fn acks_round_trip_and_drive_the_station() {
    let id = BundleId([2; 16]);
    for ack in [
        Ack::stored(Some(id), 1),
        Ack::duplicate(id, 2),
        Ack::rejected(Some(id), "bad".into(), 3),
        Ack::busy(Some(id), "spool full".into(), 250, 4),
    ] {
        assert_eq!(decode_ack(&encode_ack(&ack)).unwrap(), ack);
    }
    assert_eq!(
        station_action(&Ack::stored(Some(id), 0)),
        StationAction::Delete
    );
    assert_eq!(
        station_action(&Ack::duplicate(id, 0)),
        StationAction::Delete
    );
    assert_eq!(
        station_action(&Ack::busy(Some(id), "x".into(), 250, 0)),
        StationAction::RetryAfter(250)
    );
    assert_eq!(
        station_action(&Ack::rejected(Some(id), "bad".into(), 0)),
        StationAction::SetAside("bad".into())
    );
    assert!(decode_ack(&[1, 0]).is_err());
    let mut trailing = encode_ack(&Ack::stored(None, 0));
    trailing.push(b'x');
    assert!(decode_ack(&trailing).is_err());
}

#[test]
fn versions_are_negotiated_through_alpn() {
    assert_eq!(alpn_ids(), vec![b"nachtwacht/1".to_vec()]);
    assert_eq!(version_from_alpn(b"nachtwacht/1"), Some(1));
    assert_eq!(version_from_alpn(b"nachtwacht/2"), None);
    assert_eq!(version_from_alpn(b"h3"), None);
}
