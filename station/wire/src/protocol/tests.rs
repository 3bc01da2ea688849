use super::*;

fn header() -> UploadHeader {
    UploadHeader::for_ciphertext(BundleId([1; 16]), 42, b"ciphertext bytes")
}

#[test]
fn request_head_round_trips() {
    let head = encode_request_head(&header());
    let prefix: [u8; REQUEST_PREFIX_LEN] = head[..REQUEST_PREFIX_LEN].try_into().unwrap();
    let len = decode_request_prefix(&prefix).unwrap();
    assert_eq!(len, head.len() - REQUEST_PREFIX_LEN);
    let decoded = decode_request_header(&head[REQUEST_PREFIX_LEN..], 1 << 20).unwrap();
    assert_eq!(decoded, header());
}

#[test]
fn prefix_errors_name_the_problem() {
    let mut head = encode_request_head(&header());
    head[0] = b'X';
    let prefix: [u8; REQUEST_PREFIX_LEN] = head[..REQUEST_PREFIX_LEN].try_into().unwrap();
    assert_eq!(decode_request_prefix(&prefix), Err(ProtocolError::BadMagic));

    let mut head = encode_request_head(&header());
    head[4] = 2;
    let prefix: [u8; REQUEST_PREFIX_LEN] = head[..REQUEST_PREFIX_LEN].try_into().unwrap();
    assert_eq!(
        decode_request_prefix(&prefix),
        Err(ProtocolError::UnsupportedVersion(2))
    );

    let mut prefix = [0u8; REQUEST_PREFIX_LEN];
    prefix[..4].copy_from_slice(UPLOAD_MAGIC);
    prefix[4] = PROTOCOL_VERSION;
    prefix[5..9].copy_from_slice(&(MAX_HEADER_LEN as u32 + 1).to_le_bytes());
    assert!(matches!(
        decode_request_prefix(&prefix),
        Err(ProtocolError::TooLarge { .. })
    ));
}

#[test]
fn oversized_bundles_and_bad_digests_are_refused() {
    let json = serde_json::to_vec(&header()).unwrap();
    assert!(matches!(
        decode_request_header(&json, 4),
        Err(ProtocolError::TooLarge { .. })
    ));
    assert!(decode_request_header(b"{not json", 1 << 20).is_err());
    let h = header();
    assert_eq!(h.verify(b"ciphertext bytes"), Ok(()));
    assert_eq!(
        h.verify(b"ciphertext byteZ"),
        Err(ProtocolError::DigestMismatch)
    );
    assert!(matches!(
        h.verify(b"short"),
        Err(ProtocolError::SizeMismatch { .. })
    ));
}

#[test]
fn ack_round_trips_and_drives_the_station() {
    let ack = Ack {
        bundle_id: Some(BundleId([1; 16])),
        code: AckCode::Busy,
        reason: None,
        retry_after_ms: Some(2_500),
        server_time_ms: 1_700_000_000_000,
    };
    let decoded = decode_ack(&encode_ack(&ack)).unwrap();
    assert_eq!(decoded, ack);
    assert_eq!(station_action(&decoded), StationAction::RetryAfter(2_500));

    for (code, action) in [
        (AckCode::Stored, StationAction::Delete),
        (AckCode::Duplicate, StationAction::Delete),
        (AckCode::Rejected, StationAction::SetAside("bad".into())),
    ] {
        let ack = Ack {
            code,
            reason: Some("bad".into()),
            retry_after_ms: None,
            ..ack.clone()
        };
        assert_eq!(station_action(&ack), action);
    }
    assert!(decode_ack(&[1, 0]).is_err());
}
