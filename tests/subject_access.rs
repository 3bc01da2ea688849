//! Subject access export (GDPR art. 15), end to end: readings uploaded over QUIC, decoded and
//! evaluated, an alert worked by an officer; then `nachtwacht person export` through the real
//! binary, and the archive opened and checked against the database and the datasets.

use crate::common;

use std::collections::BTreeMap;
use std::io::Read;

use crate::common::*;
use nachtwacht::alerts::casework;
use nachtwacht::base::config::Config;
use nachtwacht::registry::accounts::{self, Account, Role};
use nachtwacht::registry::caseload;
use nachtwacht_station::source::simulator::DrinkingEpisode;
use polars::prelude::*;
use sha2::{Digest, Sha256};

fn members(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert!(out.insert(name.clone(), bytes).is_none(), "{name} twice");
    }
    out
}

fn csv_rows(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_export_holds_all_their_data_and_every_access_and_nothing_of_anyone_else() {
    let t = start_server(Config::default()).await;
    let drinking = vec![DrinkingEpisode {
        day: 1,
        hour: 20.0,
        peak_tac: 0.06,
    }];
    let (station, station_dir, person) = t.ankle_station("home-1", "AM-0001", 3, drinking);
    let (other, other_dir, other_person) = t.ankle_station("home-2", "AM-0002", 3, vec![]);
    nachtwacht_station::run_once(&station, &station_dir)
        .await
        .unwrap();
    nachtwacht_station::run_once(&other, &other_dir)
        .await
        .unwrap();
    t.server.decode_now().await;
    t.evaluate_now().await;
    let alert: i64 = t.count(&format!(
        "SELECT min(id) FROM alerts WHERE person_id = {person} AND kind = 'alcohol'"
    ));
    assert!(alert > 0, "the drinking episode raised an alert");

    // An officer works the alert: a workflow step with a note, and a view of its evidence.
    let now = nachtwacht::base::time::now_ms();
    let new = accounts::create(&t.ctx.db, "olga", Role::Officer, "test", now).unwrap();
    nachtwacht::registry::screening::screen_for_a_year(&t.ctx.db, "olga", now).unwrap();
    caseload::assign(
        &t.ctx.db,
        "olga",
        "CASE-home-1",
        now - 30 * 86_400_000,
        None,
        "test",
        now,
    )
    .unwrap();
    let olga = Account {
        id: new.id,
        username: "olga".into(),
        role: Role::Officer,
        must_change_password: false,
    };
    let note = "Cliënt gebeld, gesprek gepland";
    let ctx = t.ctx.clone();
    // Casework reads Parquet with polars, which blocks: off the async workers, as the server does.
    tokio::task::spawn_blocking(move || {
        casework::transition(&ctx, &olga, alert, "in_process", note, now).unwrap();
        casework::detail(&ctx, &olga, alert, "view", now).unwrap();
    })
    .await
    .unwrap();

    let out = tempfile::tempdir().unwrap();
    let archive_path = out.path().join("CASE-home-1.tar");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["person", "export", "--reference", "CASE-home-1", "--out"])
        .arg(&archive_path)
        .arg("--data-dir")
        .arg(t.ctx.dir.root())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let archive = std::fs::read(&archive_path).unwrap();
    let files = members(&archive);

    // Every member is listed in SHA256SUMS with its digest, and the README explains them.
    let sums = String::from_utf8(files["SHA256SUMS"].clone()).unwrap();
    assert_eq!(sums.lines().count(), files.len() - 1);
    for line in sums.lines() {
        let (hash, name) = line.split_once("  ").unwrap();
        assert_eq!(hash, hex::encode(Sha256::digest(&files[name])), "{name}");
    }
    let readme = String::from_utf8_lossy(&files["README.txt"]).to_string();
    for name in files
        .keys()
        .filter(|n| !n.starts_with("readings/") && *n != "README.txt")
    {
        assert!(readme.contains(name.as_str()), "README explains {name}");
    }
    assert!(readme.contains("NEDERLANDS") && readme.contains("ENGLISH"));

    // The readings: exactly the person's rows of the dataset.
    let pseudonyms = nachtwacht::trust::pseudonym::Pseudonymiser::load(&t.ctx.dir).unwrap();
    let pid = pseudonyms.operational(person);
    let (ctx, pid_held, parquet_bytes) = (
        t.ctx.clone(),
        pid.clone(),
        files["readings/ankle.parquet"].clone(),
    );
    // Polars blocks: off the async workers.
    let (held, exported) = tokio::task::spawn_blocking(move || {
        let (_readers, ankle_files) = common::signal_files(&ctx, nachtwacht_wire::Signal::Ankle);
        let held = nachtwacht::dataset::scan_readings(&ankle_files)
            .unwrap()
            .unwrap()
            .filter(col("pid").eq(lit(pid_held)))
            .collect()
            .unwrap()
            .height();
        let exported = ParquetReader::new(std::io::Cursor::new(parquet_bytes))
            .finish()
            .unwrap()
            .height();
        (held, exported)
    })
    .await
    .unwrap();
    assert!(held > 0);
    assert_eq!(csv_rows(&files["readings/ankle.csv"]).len(), held);
    assert_eq!(exported, held);

    // The research rows under the person's research pseudonym.
    let rid = pseudonyms.research(person);
    let daily = csv_rows(&files["daily_indicators.csv"]);
    assert!(!daily.is_empty());
    assert!(daily.iter().all(|row| row.contains(&rid)));

    // Alerts, workflow with the note, and the accesses the audit log holds.
    let alerts = csv_rows(&files["alerts.csv"]);
    assert_eq!(
        alerts.len() as i64,
        t.count(&format!(
            "SELECT count(*) FROM alerts WHERE person_id = {person}"
        ))
    );
    assert!(alerts
        .iter()
        .any(|row| row.starts_with(&format!("{alert},"))));
    let workflow = String::from_utf8_lossy(&files["alert_workflow.csv"]).to_string();
    assert!(workflow.contains(note) && workflow.contains("olga"));
    let accesses = String::from_utf8_lossy(&files["accesses.csv"]).to_string();
    for action in [
        "person.add",
        "device.assign",
        "alert.transition",
        "alert.view",
    ] {
        assert!(
            accesses.contains(action),
            "{action} in accesses.csv:\n{accesses}"
        );
    }
    assert!(String::from_utf8_lossy(&files["devices.csv"]).contains("AM-0001"));
    assert!(String::from_utf8_lossy(&files["stations.csv"]).contains("home-1"));

    // Nothing of the other person.
    let other_pid = pseudonyms.operational(other_person);
    let other_rid = pseudonyms.research(other_person);
    for secret in [
        "CASE-home-2",
        "AM-0002",
        "home-2",
        other_pid.as_str(),
        other_rid.as_str(),
    ] {
        for (name, bytes) in &files {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in {name}"
            );
        }
    }

    // The export is audited, naming the archive by its digest.
    let entries = nachtwacht::trust::audit::entries(&t.ctx.db.lock()).unwrap();
    let export = entries
        .iter()
        .rev()
        .find(|e| e.action == "person.export")
        .expect("the export is audited");
    assert_eq!(export.object, format!("person:{person}"));
    assert!(export
        .detail
        .contains(&hex::encode(Sha256::digest(&archive))));
}
