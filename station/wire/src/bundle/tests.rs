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
        &[SignalBatch {
            signal: Signal::Ankle,
            batch: batch.clone(),
        }],
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
        &[SignalBatch {
            signal: Signal::Ankle,
            batch: ankle_batch(10),
        }],
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
    let err = encode_bundle(
        manifest(),
        &[SignalBatch {
            signal: Signal::Eda,
            batch: wrong,
        }],
    )
    .unwrap_err();
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
