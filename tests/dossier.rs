//! The court evidence dossier, end to end: readings uploaded over QUIC by two stations, decoded
//! and evaluated by the real pipeline; a dossier built for an alert verifies offline, through the
//! library and through the real binary, and any byte changed in any member makes verification fail
//! naming that member. Officers reach only their own caseload's dossiers, and only when screened.

use std::process::Command;

use crate::common::web::web_fixture;
use nachtwacht::accountability::dossier;
use nachtwacht::alerts::casework::{self, Reader};
use nachtwacht::registry::accounts;

fn nachtwacht() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dossier_verifies_and_any_changed_byte_fails_naming_its_member() {
    let f = web_fixture().await;
    let ctx = f.t.ctx.clone();
    let alert = f.own_alert;
    let d = tokio::task::spawn_blocking(move || {
        dossier::build(
            &ctx,
            Reader::Operator("test"),
            alert,
            nachtwacht::base::time::now_ms(),
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert!(d.readings > 0 && d.ciphertexts > 0, "{d:?}");
    assert!(d.pruned.is_empty(), "{:?}", d.pruned);

    let identities =
        nachtwacht::trust::secrets::load_age_identities(&f.t.ctx.dir.age_identity()).unwrap();
    let key = nachtwacht::trust::audit::checkpoint::public_key(&f.t.ctx.dir).unwrap();
    let v = dossier::verify(&d.archive, Some(&identities), Some(&key));
    assert!(v.ok(), "{:?}", v.problems);
    assert!(v.unchecked.is_empty(), "{:?}", v.unchecked);
    assert!(
        v.checked
            .iter()
            .any(|c| c.contains("readings/ankle.csv: all")),
        "{:?}",
        v.checked
    );
    assert!(
        v.checked.iter().any(|c| c.contains("custody steps"))
            && !v.checked.iter().any(|c| c.contains(": 0 custody steps")),
        "every bundle's stored and decoded entries commit to it: {:?}",
        v.checked
    );

    // Another installation's key is refused even though the dossier is intact.
    let other = dossier::verify(&d.archive, Some(&identities), Some(&"00".repeat(32)));
    assert!(other
        .problems
        .iter()
        .any(|p| p.member == dossier::SIGNATURE));

    // One byte changed in any member: verification fails and names it.
    let members = nachtwacht::base::archive::untar(&d.archive, u64::MAX).unwrap();
    assert!(members.len() >= 12, "{}", members.len());
    for (i, (name, bytes)) in members.iter().enumerate() {
        let mut changed = members.clone();
        let at = bytes.len() / 2;
        changed[i].1[at] ^= 0x01;
        let archive = nachtwacht::base::archive::tar(&changed, 0).unwrap();
        let v = dossier::verify(&archive, Some(&identities), Some(&key));
        assert!(!v.ok(), "a byte changed in {name} went unnoticed");
        assert!(
            v.problems.iter().any(|p| p.member.contains(name.as_str())),
            "{name}: {:?}",
            v.problems
        );
    }
    // A member taken out, or one added, is named too.
    let mut fewer = members.clone();
    let removed = fewer.remove(2).0;
    let v = dossier::verify(
        &nachtwacht::base::archive::tar(&fewer, 0).unwrap(),
        None,
        None,
    );
    assert!(
        v.problems.iter().any(|p| p.member == removed),
        "{:?}",
        v.problems
    );
    let mut more = members.clone();
    more.push(("extra.csv".into(), b"x".to_vec()));
    let v = dossier::verify(
        &nachtwacht::base::archive::tar(&more, 0).unwrap(),
        None,
        None,
    );
    assert!(
        v.problems.iter().any(|p| p.member == "extra.csv"),
        "{:?}",
        v.problems
    );

    // Generating it was audited: the read of the alert and the archive written, with its digest.
    let written = f.t.count(&format!(
        "SELECT count(*) FROM audit_log WHERE action = 'dossier.written' AND object = 'alert:{alert}'
            AND detail LIKE '%{}%'",
        d.sha256
    ));
    assert_eq!(written, 1);
    assert_eq!(
        f.t.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'alert.dossier' AND object = 'alert:{alert}'"
        )),
        1
    );

    // The binary: `alert dossier` writes one, `dossier verify` accepts it and refuses a changed one.
    let out = f.t.tmp.path().join("dossier.tar");
    let data = f.t.ctx.dir.root().to_str().unwrap().to_string();
    let run = nachtwacht()
        .args([
            "alert",
            "dossier",
            "--data-dir",
            &data,
            "--id",
            &alert.to_string(),
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let verify = |file: &std::path::Path| {
        nachtwacht()
            .args(["dossier", "verify"])
            .arg(file)
            .arg("--identity")
            .arg(f.t.ctx.dir.age_identity())
            .args(["--public-key", &key])
            .output()
            .unwrap()
    };
    let ok = verify(&out);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success() && stdout.contains("VERIFIED"),
        "{stdout}"
    );
    let mut members =
        nachtwacht::base::archive::untar(&std::fs::read(&out).unwrap(), u64::MAX).unwrap();
    let csv = members
        .iter_mut()
        .find(|(n, _)| n == "readings/ankle.csv")
        .unwrap();
    let last = csv.1.len() - 3;
    csv.1[last] = if csv.1[last] == b'0' { b'1' } else { b'0' };
    let tampered = f.t.tmp.path().join("tampered.tar");
    std::fs::write(
        &tampered,
        nachtwacht::base::archive::tar(&members, 0).unwrap(),
    )
    .unwrap();
    let bad = verify(&tampered);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{stdout}");
    assert!(stdout.contains("FAILED   readings/ankle.csv"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officers_get_dossiers_of_their_own_caseload_only_and_only_while_screened() {
    let f = web_fixture().await;
    let now = nachtwacht::base::time::now_ms();
    let officer = |name: &str| {
        let id = accounts::id_of(&f.t.ctx.db.lock(), name).unwrap().unwrap();
        accounts::Account {
            id,
            username: name.into(),
            role: accounts::Role::Officer,
            must_change_password: false,
        }
    };
    let olga = officer("olga");
    let (ctx, own, other) = (f.t.ctx.clone(), f.own_alert, f.other_alert);
    tokio::task::spawn_blocking(move || {
        assert!(dossier::build(&ctx, Reader::Officer(&olga), own, now).is_ok());
        let err = dossier::build(&ctx, Reader::Officer(&olga), other, now).unwrap_err();
        assert!(
            matches!(err, dossier::Error::Casework(casework::Error::NotFound)),
            "{err}"
        );
        // Olga's VOG expires: no dossier, the refusal is audited.
        nachtwacht::registry::screening::record(
            &ctx.db,
            "olga",
            nachtwacht::registry::screening::ScreeningKind::Vog,
            now - 400 * nachtwacht::base::time::DAY_MS,
            now - 1,
            "admin",
            now,
        )
        .unwrap();
        let err = dossier::build(&ctx, Reader::Officer(&olga), own, now + 1).unwrap_err();
        assert!(err.to_string().contains("screening"), "{err}");
    })
    .await
    .unwrap();
    assert_eq!(
        f.t.count(
            "SELECT count(*) FROM audit_log WHERE action = 'screening.refused' AND actor = 'olga'"
        ),
        1
    );
}
