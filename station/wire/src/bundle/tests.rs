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
fn signal_streams_are_zstd_compressed() {
    // 10,000 identical readings compress to a fraction of their 41 bytes per row.
    let batch = ankle_batch(10_000);
    let bytes = encode_bundle(
        manifest(),
        &[SignalBatch::nominal(Signal::Ankle, batch.clone())],
    )
    .unwrap();
    assert!(
        bytes.len() < batch.get_array_memory_size() / 4,
        "{} bytes for {} in memory",
        bytes.len(),
        batch.get_array_memory_size()
    );
    assert_eq!(decode_bundle(&bytes).unwrap().batches[0].batch, batch);
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
