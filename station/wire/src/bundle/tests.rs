use std::sync::Arc;

use arrow::array::{BooleanArray, Float64Array, TimestampMillisecondArray};

use super::*;

fn ankle_batch(n: usize) -> RecordBatch {
    let ts: Vec<i64> = (0..n as i64)
        .map(|i| 1_700_000_000_000 + i * 1_800_000)
        .collect();
    RecordBatch::try_new(
        Signal::Ankle.schema(),
        vec![
            Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
            Arc::new(Float64Array::from(vec![0.01; n])),
            Arc::new(Float64Array::from(vec![0.0; n])),
            Arc::new(Float64Array::from(vec![33.0; n])),
            Arc::new(Float64Array::from(vec![1.0; n])),
            Arc::new(BooleanArray::from(vec![true; n])),
        ],
    )
    .unwrap()
}

fn manifest() -> BundleManifest {
    BundleManifest {
        bundle_id: BundleId([7; 16]),
        device_serial: "AM-0001".into(),
        device_kind: DeviceKind::AnkleMonitor,
        sealed_at_ms: 1_700_000_000_000,
        signals: vec![],
    }
}

#[test]
fn round_trip_keeps_manifest_and_rows() {
    let batch = ankle_batch(48);
    let bytes = encode_bundle(
        manifest(),
        &[SignalBatch::nominal(Signal::Ankle, batch.clone())],
    )
    .unwrap();
    let decoded = decode_bundle(&bytes).unwrap();
    assert_eq!(decoded.manifest.bundle_id, BundleId([7; 16]));
    assert_eq!(decoded.manifest.signals.len(), 1);
    assert_eq!(decoded.manifest.signals[0].rows, 48);
    assert_eq!(decoded.batches[0].batch, batch);
}

#[test]
fn unknown_version_is_rejected_not_guessed() {
    let mut bytes = encode_bundle(manifest(), &[]).unwrap();
    bytes[8] = 9;
    assert!(matches!(
        decode_bundle(&bytes),
        Err(BundleError::UnsupportedVersion(9))
    ));
}

#[test]
fn truncated_and_garbage_bundles_are_errors() {
    let bytes = encode_bundle(
        manifest(),
        &[SignalBatch::nominal(Signal::Ankle, ankle_batch(10))],
    )
    .unwrap();
    for cut in [0, 5, 12, 20, bytes.len() - 1] {
        assert!(
            decode_bundle(&bytes[..cut]).is_err(),
            "cut at {cut} accepted"
        );
    }
    assert!(matches!(
        decode_bundle(b"hello world, no bundle"),
        Err(BundleError::BadMagic)
    ));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(decode_bundle(&trailing).is_err());
}

#[test]
fn a_batch_with_the_wrong_schema_is_refused() {
    let wrong = ankle_batch(3);
    let err = encode_bundle(manifest(), &[SignalBatch::nominal(Signal::Eda, wrong)]).unwrap_err();
    assert!(err.to_string().contains("eda"), "{err}");
}

#[test]
fn bundle_ids_round_trip_through_hex_and_json() {
    let id = BundleId([0xab; 16]);
    assert_eq!(BundleId::from_hex(&id.to_hex()), Some(id));
    assert_eq!(BundleId::from_hex("abc"), None);
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(serde_json::from_str::<BundleId>(&json).unwrap(), id);
}

#[test]
fn sampled_signals_must_declare_a_rate_and_event_signals_must_not() {
    let undeclared = SignalBatch {
        rate_hz: None,
        ..SignalBatch::nominal(Signal::Ankle, ankle_batch(4))
    };
    let bytes = encode_bundle(manifest(), &[undeclared]).unwrap();
    let err = decode_bundle(&bytes).unwrap_err();
    assert!(err.to_string().contains("sample rate"), "{err}");

    let tags = RecordBatch::try_new(
        Signal::Tag.schema(),
        vec![Arc::new(
            TimestampMillisecondArray::from(vec![1_700_000_000_000]).with_timezone("UTC"),
        )],
    )
    .unwrap();
    let with_rate = SignalBatch {
        rate_hz: Some(1.0),
        ..SignalBatch::nominal(Signal::Tag, tags.clone())
    };
    let bytes = encode_bundle(manifest(), &[with_rate]).unwrap();
    assert!(decode_bundle(&bytes).is_err());
    let bytes = encode_bundle(manifest(), &[SignalBatch::nominal(Signal::Tag, tags)]).unwrap();
    assert_eq!(
        decode_bundle(&bytes).unwrap().batches[0].batch.num_rows(),
        1
    );
}

#[test]
fn signal_streams_are_zstd_compressed_in_both_versions() {
    // 10,000 identical readings compress to a fraction of their 41 bytes per row.
    let batch = ankle_batch(10_000);
    for version in READABLE_VERSIONS {
        let bytes = encode_bundle_as(
            version,
            manifest(),
            &[SignalBatch::nominal(Signal::Ankle, batch.clone())],
        )
        .unwrap();
        assert!(
            bytes.len() < batch.get_array_memory_size() / 4,
            "v{version}: {} bytes for {} in memory",
            bytes.len(),
            batch.get_array_memory_size()
        );
        assert_eq!(decode_bundle(&bytes).unwrap().batches[0].batch, batch);
    }
}

#[test]
fn a_signal_listed_twice_is_a_structural_error() {
    let batch = ankle_batch(3);
    let bytes = encode_bundle(
        manifest(),
        &[
            SignalBatch::nominal(Signal::Ankle, batch.clone()),
            SignalBatch::nominal(Signal::Ankle, batch),
        ],
    )
    .unwrap();
    let err = decode_bundle(&bytes).unwrap_err().to_string();
    assert!(err.contains("appears more than once"), "{err}");
}

#[test]
fn stations_write_v2_and_v1_bundles_still_decode_to_the_same_rows() {
    let batch = ankle_batch(500);
    let signals = [SignalBatch::nominal(Signal::Ankle, batch.clone())];
    let v2 = encode_bundle(manifest(), &signals).unwrap();
    let v1 = encode_bundle_as(1, manifest(), &signals).unwrap();
    assert_eq!(u16::from_le_bytes([v2[8], v2[9]]), 2, "stations write v2");
    assert_eq!(u16::from_le_bytes([v1[8], v1[9]]), 1);
    assert_ne!(v1, v2);
    for bytes in [&v1, &v2] {
        let decoded = decode_bundle(bytes).unwrap();
        assert_eq!(decoded.batches[0].batch, batch);
        assert_eq!(decoded.manifest.signals[0].rows, 500);
    }
    assert!(matches!(
        encode_bundle_as(3, manifest(), &signals),
        Err(BundleError::UnsupportedVersion(3))
    ));
}

/// A v2 bundle around hand-made stream bytes, declared as one ankle stream of 1 row.
fn v2_with_stream(stream: &[u8]) -> Vec<u8> {
    let mut m = manifest();
    m.signals = vec![SignalEntry {
        signal: Signal::Ankle,
        rows: 1,
        bytes: stream.len() as u64,
        rate_hz: Signal::Ankle.nominal_rate_hz(),
    }];
    let json = serde_json::to_vec(&m).unwrap();
    let mut out = BUNDLE_MAGIC.to_vec();
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(stream);
    out
}

#[test]
fn a_v2_stream_must_be_exactly_one_zstd_frame_that_declares_a_bounded_size() {
    let mut ipc = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut ipc, &Signal::Ankle.schema()).unwrap();
        w.write(&ankle_batch(1)).unwrap();
        w.finish().unwrap();
    }
    let framed = zstd::bulk::compress(&ipc, 3).unwrap();
    decode_bundle(&v2_with_stream(&framed)).expect("the well-formed stream decodes");

    let reason = |stream: &[u8]| {
        decode_bundle(&v2_with_stream(stream))
            .unwrap_err()
            .to_string()
    };
    assert!(
        reason(&ipc).contains("not a zstd frame"),
        "{}",
        reason(&ipc)
    );
    let mut trailing = framed.clone();
    trailing.extend_from_slice(b"xx");
    assert!(
        reason(&trailing).contains("2 bytes follow"),
        "{}",
        reason(&trailing)
    );
    // The streaming encoder does not write the content size.
    let unsized_frame = zstd::stream::encode_all(&ipc[..], 3).unwrap();
    assert!(
        reason(&unsized_frame).contains("does not declare its content size"),
        "{}",
        reason(&unsized_frame)
    );
    // A frame header that claims 1 GiB + 1 byte (single segment, 8-byte size) around one RLE
    // block: refused from the header, before anything is allocated.
    let mut forged = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
    forged.extend_from_slice(&(MAX_STREAM_LEN + 1).to_le_bytes());
    forged.extend_from_slice(&[0x0b, 0x00, 0x00, 0x41]);
    assert!(reason(&forged).contains("more than"), "{}", reason(&forged));
}

/// A zstd frame header that declares `size` decoded bytes around one tiny RLE block.
fn forged_frame(size: u64) -> Vec<u8> {
    let mut forged = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
    forged.extend_from_slice(&size.to_le_bytes());
    forged.extend_from_slice(&[0x0b, 0x00, 0x00, 0x41]);
    forged
}

fn v2_with_streams(streams: &[(Signal, u64, Vec<u8>)]) -> Vec<u8> {
    let mut m = manifest();
    m.signals = streams
        .iter()
        .map(|(signal, rows, stream)| SignalEntry {
            signal: *signal,
            rows: *rows,
            bytes: stream.len() as u64,
            rate_hz: signal.nominal_rate_hz(),
        })
        .collect();
    let json = serde_json::to_vec(&m).unwrap();
    let mut out = BUNDLE_MAGIC.to_vec();
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, s) in streams {
        out.extend_from_slice(s);
    }
    out
}

/// Decompression bombs are refused from the frame headers and the manifest, before anything is
/// decompressed: a stream may declare no more than its declared rows can take, and a bundle no
/// more than MAX_BUNDLE_DECODED_LEN in all. Before, one stream could declare up to 1 GiB whatever
/// its rows, and a bundle any number of such streams.
#[test]
fn a_bundle_declaring_more_than_its_rows_or_the_per_bundle_bound_is_refused_unread() {
    // One ankle row claims 1 MiB.
    let one_row = v2_with_streams(&[(Signal::Ankle, 1, forged_frame(1 << 20))]);
    let e = decode_bundle(&one_row).unwrap_err().to_string();
    assert!(e.contains("for 1 rows"), "{e}");
    // Rows that fit one by one, but not together: two streams of 10 M rows of 16 bytes each.
    let rows = 10_000_000u64;
    let each = rows * Signal::Hr.max_row_bytes();
    let many = v2_with_streams(&[
        (Signal::Hr, rows, forged_frame(each)),
        (Signal::Eda, rows, forged_frame(each)),
    ]);
    let e = decode_bundle(&many).unwrap_err().to_string();
    assert!(e.contains("per bundle"), "{e}");
    assert!(declared_decoded_len(&many).is_err());
    // What a real bundle declares is what it decodes to.
    let mut ipc = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut ipc, &Signal::Ankle.schema()).unwrap();
        w.write(&ankle_batch(3)).unwrap();
        w.finish().unwrap();
    }
    let framed = zstd::bulk::compress(&ipc, 3).unwrap();
    let real = v2_with_streams(&[(Signal::Ankle, 3, framed)]);
    assert_eq!(declared_decoded_len(&real).unwrap(), ipc.len() as u64);
    decode_bundle(&real).unwrap();
}

/// v1 streams carry zstd-compressed IPC buffers, each prefixed by the length it decodes to; arrow
/// allocates that length. A v1 stream declaring more than its manifest rows can take is refused
/// from those prefixes, before anything is decompressed.
#[test]
fn a_v1_stream_declaring_more_than_its_rows_is_refused_unread() {
    let batch = ankle_batch(50_000);
    let mut ipc = Vec::new();
    {
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::ZSTD))
            .unwrap();
        let mut w =
            StreamWriter::try_new_with_options(&mut ipc, &Signal::Ankle.schema(), options).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    let v1 = |rows: u64| {
        let mut bytes = v2_with_streams(&[(Signal::Ankle, rows, ipc.clone())]);
        bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
        bytes
    };
    let declared = declared_decoded_len(&v1(50_000)).unwrap();
    assert!(declared >= 50_000 * 33, "{declared}");
    decode_bundle(&v1(50_000)).expect("the honest v1 bundle decodes");
    let e = decode_bundle(&v1(1)).unwrap_err().to_string();
    assert!(e.contains("for 1 rows"), "{e}");
}

/// What arrow's own writer produces for large honest streams fits the bound for every signal:
/// the bound counts validity bitmaps, which the writer includes for columns without nulls too (a
/// day of BVP carries 1.4 MB of them).
#[test]
fn honest_streams_of_millions_of_rows_fit_their_declared_bound() {
    use arrow::array::{ArrayRef, BooleanArray, StringArray};
    let rows = 1_000_000usize;
    for signal in Signal::ALL {
        let ts: ArrayRef = Arc::new(
            TimestampMillisecondArray::from((0..rows as i64).collect::<Vec<_>>())
                .with_timezone("UTC"),
        );
        let mut columns = vec![ts];
        for (_, dt) in signal.value_columns() {
            columns.push(match dt {
                DataType::Boolean => Arc::new(BooleanArray::from(vec![true; rows])) as ArrayRef,
                DataType::Utf8 => Arc::new(StringArray::from(vec!["strap-opened"; rows])),
                _ => Arc::new(Float64Array::from(vec![1.5; rows])),
            });
        }
        let batch = RecordBatch::try_new(signal.schema(), columns).unwrap();
        let mut ipc = Vec::new();
        {
            let mut w = StreamWriter::try_new(&mut ipc, &signal.schema()).unwrap();
            w.write(&batch).unwrap();
            w.finish().unwrap();
        }
        let bound = signal.max_stream_len(rows as u64);
        assert!(
            (ipc.len() as u64) <= bound,
            "{}: {} bytes, bound {bound}",
            signal.name(),
            ipc.len()
        );
    }
}

#[test]
fn a_device_kind_has_one_string_form_which_serde_uses_too() {
    for kind in DeviceKind::ALL {
        assert_eq!(
            serde_json::to_string(&kind).unwrap(),
            format!("\"{}\"", kind.as_str())
        );
        assert_eq!(DeviceKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(DeviceKind::parse("bracelet"), None);
}
