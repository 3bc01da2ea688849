//! Backup and restore while the server runs: `nachtwacht backup` (another process) copies the
//! installation while stations keep uploading and the decoder files bundles as evidence;
//! `nachtwacht restore` puts it into a new directory where every bundle acknowledged before the
//! backup, every alert and every audit entry is found, each bundle's ciphertext where the
//! database says, and the audit chain verifies. A partial or damaged backup is refused.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht::base::Context;
use nachtwacht_station::source::simulator::DrinkingEpisode;

fn ids(ctx: &Context, sql: &str) -> Vec<String> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt
        .query_map([], |r| r.get::<_, nachtwacht::base::db::Value>(0))
        .unwrap();
    rows.map(|v| format!("{:?}", v.unwrap())).collect()
}

fn nachtwacht(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_bundle_alert_and_audit_entry() {
    let t = start_server_on_sqlite(Config::default()).await;
    // Before: two persons' data stored, decoded and evaluated, with an alcohol alert.
    for (name, serial) in [("home-1", "AM-0001"), ("home-2", "AM-0002")] {
        let drinking = vec![DrinkingEpisode {
            day: 1,
            hour: 20.0,
            peak_tac: 0.05,
        }];
        let (station, dir, _) = t.ankle_station(name, serial, 3, drinking);
        let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
        assert_eq!(report.acknowledged, 3, "{report:?}");
    }
    t.server.decode_now().await;
    t.evaluate_now().await;
    let bundles_before = ids(&t.ctx, "SELECT bundle_id FROM bundles ORDER BY 1");
    let alerts_before = ids(&t.ctx, "SELECT id FROM alerts ORDER BY 1");
    let audit_before: i64 = t
        .ctx
        .db
        .lock()
        .query_row("SELECT max(seq) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(bundles_before.len(), 6);
    assert!(!alerts_before.is_empty());

    // Load: new stations keep uploading (and the decoder keeps filing) until the backup is made.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, t) = (stop.clone(), &t);
        let mut uploaded = 0;
        let mut i = 0;
        let stations: Vec<_> = (0..40)
            .map(|n| t.ankle_station(&format!("load-{n}"), &format!("AM-1{n:03}"), 4, vec![]))
            .collect();
        async move {
            while !stop.load(Ordering::Relaxed) && i < stations.len() {
                let (station, dir, _) = &stations[i];
                uploaded += nachtwacht_station::run_once(station, dir)
                    .await
                    .unwrap()
                    .acknowledged;
                i += 1;
            }
            uploaded
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let (backup_dir, restored) = (tmp.path().join("backup"), tmp.path().join("restored"));
    let data = t.ctx.dir.root().to_path_buf();
    let backup = {
        let (backup_dir, stop) = (backup_dir.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            // Let the load get going first.
            std::thread::sleep(std::time::Duration::from_millis(300));
            let out = nachtwacht(&[
                "backup",
                "--data-dir",
                data.to_str().unwrap(),
                "--out",
                backup_dir.to_str().unwrap(),
                "--with-keys",
            ]);
            stop.store(true, Ordering::Relaxed);
            out
        })
    };
    let (uploaded_during, backup) = tokio::join!(load, backup);
    let backup = backup.unwrap();
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    assert!(uploaded_during > 0, "no load while backing up");
    // The backup is on the record.
    assert!(!ids(
        &t.ctx,
        "SELECT seq FROM audit_log WHERE action = 'backup.made'"
    )
    .is_empty());

    let out = nachtwacht(&[
        "restore",
        "--from",
        backup_dir.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Context::open(&restored).unwrap();
    r.check_private().unwrap();
    // Every bundle, alert and audit entry from before the backup; more from during it, maybe.
    let bundles_after = ids(&r, "SELECT bundle_id FROM bundles ORDER BY 1");
    for b in &bundles_before {
        assert!(bundles_after.contains(b), "bundle {b} lost");
    }
    assert!(bundles_after.len() >= bundles_before.len());
    let alerts_after = ids(&r, "SELECT id FROM alerts ORDER BY 1");
    for a in &alerts_before {
        assert!(alerts_after.contains(a), "alert {a} lost");
    }
    let audit_after: i64 =
        r.db.lock()
            .query_row("SELECT max(seq) FROM audit_log", [], |r| r.get(0))
            .unwrap();
    assert!(audit_after >= audit_before);
    // Each bundle's ciphertext is where the restored database says it is.
    let rows: Vec<(String, String, i64, String)> = {
        let conn = r.db.lock();
        let mut stmt = conn
            .prepare("SELECT bundle_id, state, received_at_ms, sha256 FROM bundles")
            .unwrap();
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    for (id, state, received, sha256) in &rows {
        let bundle = nachtwacht_wire::BundleId::from_hex(id).unwrap();
        use nachtwacht::base::blobs::Key;
        let key = match state.as_str() {
            "spooled" => {
                // Where its row says (an object, or a range of a segment), or filed by the
                // decoder while the backup was made.
                let at = nachtwacht::spool::location(&r.db.lock(), &bundle)
                    .unwrap()
                    .unwrap();
                let bytes = at.read(&r.blobs).unwrap().or_else(|| {
                    [Key::evidence(&bundle, *received), Key::quarantined(&bundle)]
                        .iter()
                        .find_map(|k| r.blobs.get(k).unwrap())
                });
                let bytes = bytes.unwrap_or_else(|| panic!("spooled bundle {id}: no copy"));
                use sha2::Digest;
                assert_eq!(&hex::encode(sha2::Sha256::digest(&bytes)), sha256, "{id}");
                continue;
            }
            "processed" => Key::evidence(&bundle, *received),
            _ => Key::quarantined(&bundle),
        };
        let path = r.dir.root().join(key.as_str());
        assert!(path.exists(), "{state} bundle {id}: no {}", path.display());
    }
    // Every dataset file of the catalog is there, and the chain verifies with the keys.
    let paths = ids(&r, "SELECT path FROM dataset_files");
    assert!(!paths.is_empty());
    for p in ids(&r, "SELECT path FROM dataset_files") {
        let p = p.trim_start_matches("Text(\"").trim_end_matches("\")");
        assert!(restored.join(p).exists(), "dataset file {p}");
    }
    let verdict = nachtwacht::trust::audit::verify_all(&r.dir, &r.db.lock(), None).unwrap();
    assert!(
        matches!(verdict, nachtwacht::trust::audit::Verdict::Intact { .. }),
        "{verdict:?}"
    );
    let out = nachtwacht(&["audit", "verify", "--data-dir", restored.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A partial backup is refused, naming what is wrong; so is one without its manifest.
    let partial = tmp.path().join("partial");
    copy_tree(&backup_dir, &partial);
    let manifest: nachtwacht::ops::backup::Manifest =
        serde_json::from_slice(&std::fs::read(partial.join("manifest.json")).unwrap()).unwrap();
    let gone = manifest
        .files
        .iter()
        .find(|f| f.path.starts_with("evidence/"))
        .unwrap();
    std::fs::remove_file(partial.join(&gone.path)).unwrap();
    let out = nachtwacht(&[
        "restore",
        "--from",
        partial.to_str().unwrap(),
        "--data-dir",
        tmp.path().join("r2").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&gone.path) && stderr.contains("incomplete"),
        "{stderr}"
    );
    assert!(!tmp.path().join("r2").join("state.sqlite").exists());
    std::fs::remove_file(partial.join("manifest.json")).unwrap();
    let err = nachtwacht::ops::backup::restore(&partial, &tmp.path().join("r3")).unwrap_err();
    assert!(err.to_string().contains("no manifest.json"), "{err}");
    // Nothing is restored over an existing installation.
    let err = nachtwacht::ops::backup::restore(&backup_dir, &restored).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}
