//! The ciphertext store the tests use: a fresh prefix in an S3-compatible bucket when
//! `NACHTWACHT_TEST_S3` names one, the data directory otherwise (see `tests/common`).
//!
//! `NACHTWACHT_TEST_S3` holds `key=value` pairs separated by spaces: `endpoint`, `bucket`,
//! `access_key_id` and `secret_access_key_file` (an absolute path), e.g. as `.ci/run` sets it for
//! the s3s-fs server it starts.

use std::path::Path;

use super::Blobs;
use crate::base::config::StorageConfig;

/// The test server's storage settings under a prefix no other test uses, or `None` (and a note,
/// once) for local files.
pub fn s3_config() -> Option<StorageConfig> {
    static SKIPPED: std::sync::Once = std::sync::Once::new();
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let Some(spec) = std::env::var("NACHTWACHT_TEST_S3")
        .ok()
        .filter(|s| !s.trim().is_empty())
    else {
        SKIPPED.call_once(|| {
            eprintln!("note: object storage half skipped (NACHTWACHT_TEST_S3 is not set)")
        });
        return None;
    };
    let mut config =
        StorageConfig::s3_from_pairs(&spec).unwrap_or_else(|e| panic!("NACHTWACHT_TEST_S3: {e}"));
    config.allow_http = true;
    config.prefix = format!(
        "t{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    Some(config)
}

/// `config` with its ciphertexts in the tests' object storage, when there is one.
pub fn config(mut config: crate::base::config::Config) -> crate::base::config::Config {
    if let Some(storage) = s3_config() {
        config.storage = storage;
    }
    config
}

/// The tests' ciphertext store: object storage when there is a server, else files under `root`.
pub fn open(root: &Path) -> Blobs {
    match s3_config() {
        Some(storage) => Blobs::open(&storage, &crate::base::datadir::DataDir::new(root))
            .expect("NACHTWACHT_TEST_S3 names a working store"),
        None => Blobs::Local(super::LocalBlobs::new(root)),
    }
}
