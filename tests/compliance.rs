//! The compliance report judges each control by code: a data directory set up as an operator
//! would passes every control, and each control broken in a copy of it fails exactly that
//! control. The demo's data directory passes every control through the real binary, and a copy
//! with a world-readable database fails exactly the permissions control.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nachtwacht::accountability::compliance::{self, ControlId};
use nachtwacht::base::time::DAY_MS;
use nachtwacht::base::Context;
use nachtwacht::registry::accounts::{self, Role};
use nachtwacht::registry::{caseload, enroll, screening};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A data directory as an operator sets one up: an administrator, an officer with a caseload,
/// an auditor and a manager, all screened where they must be; a person with a station; the rules
/// and retention policy loaded; a research project. On SQLite whatever the tests' database: the
/// test breaks each control in a copy of the data directory, and a copy of SQLite's file is a
/// copy of the state (a copied PostgreSQL configuration would share one database).
fn base(root: &Path, now: i64) {
    nachtwacht::base::datadir::restrict_umask();
    nachtwacht::server::init::init(root, &nachtwacht::base::config::Config::default(), now)
        .unwrap();
    let ctx = Context::open(root).unwrap();
    for (name, role) in [
        ("olga", Role::Officer),
        ("aud", Role::Auditor),
        ("max", Role::Manager),
    ] {
        accounts::create(&ctx.db, name, role, "admin", now).unwrap();
    }
    for name in ["admin", "olga", "aud"] {
        screening::screen_for_a_year(&ctx.db, name, now).unwrap();
    }
    let programme = nachtwacht::base::programme::Programme::AlcoholBan;
    for reference in ["CASE-1", "CASE-2"] {
        enroll::add_person(&ctx, reference, programme, "admin").unwrap();
    }
    caseload::assign(&ctx.db, "olga", "CASE-1", now - DAY_MS, None, "admin", now).unwrap();
    enroll::add_station(&ctx, "home-1", "admin").unwrap();
    enroll::link_station(&ctx, "home-1", "CASE-1", "admin").unwrap();
    nachtwacht::evaluate::rules_files::load(&ctx.dir, &ctx.db, "admin", now).unwrap();
    nachtwacht::lifecycle::policy::load(&ctx.dir, &ctx.db, "admin", now).unwrap();
    nachtwacht::research::create_project(
        &ctx,
        "wodc",
        nachtwacht::research::Budget::new(1.0, 0.5),
        "admin",
    )
    .unwrap();
}

fn failed(root: &Path, now: i64) -> Vec<ControlId> {
    let ctx = Context::open(root).unwrap();
    compliance::report(&ctx, "test", now).unwrap().failed()
}

fn sql(root: &Path, statement: &str) {
    let ctx = Context::open(root).unwrap();
    ctx.db.lock().execute_batch(statement).unwrap();
}

fn account_id(root: &Path, name: &str) -> i64 {
    accounts::id_of(&Context::open(root).unwrap().db.lock(), name)
        .unwrap()
        .unwrap()
}

#[test]
fn each_control_broken_in_a_copy_fails_exactly_that_control() {
    let tmp = tempfile::tempdir().unwrap();
    let now = nachtwacht::base::time::now_ms();
    let root = tmp.path().join("base");
    base(&root, now);
    assert_eq!(
        failed(&root, now),
        vec![],
        "the base directory passes every control"
    );

    type Break = Box<dyn Fn(&Path)>;
    let breaks: Vec<(ControlId, Break)> = vec![
        (
            ControlId::Accounts,
            Box::new(move |r| {
                sql(
                    r,
                    &format!(
            "INSERT INTO accounts (username, role, password_hash, created_at_ms, totp_secret)
             VALUES ('ghost', 'manager', 'x', {now}, 'SECRET')"),
                )
            }),
        ),
        (
            ControlId::Mfa,
            Box::new(|r| {
                sql(
                    r,
                    "UPDATE accounts SET totp_secret = NULL WHERE username = 'max'",
                )
            }),
        ),
        (
            ControlId::UnusedAccounts,
            Box::new(move |r| {
                sql(
                    r,
                    &format!(
                        "UPDATE accounts SET created_at_ms = {} WHERE username = 'max'",
                        now - 200 * DAY_MS
                    ),
                )
            }),
        ),
        (
            ControlId::Caseloads,
            Box::new(move |r| {
                let ctx = Context::open(r).unwrap();
                accounts::disable(&ctx.db, account_id(r, "olga"), "admin", now).unwrap();
            }),
        ),
        (
            ControlId::PersonalDataAccess,
            Box::new(move |r| {
                let ctx = Context::open(r).unwrap();
                let other: i64 = ctx
                    .db
                    .lock()
                    .query_row(
                        "SELECT id FROM persons WHERE reference = 'CASE-2'",
                        [],
                        |x| x.get(0),
                    )
                    .unwrap();
                nachtwacht::trust::audit::append(
                    &ctx.db.lock(),
                    now,
                    "olga",
                    "alert.view",
                    "alert:7",
                    &format!("{{\"person\": {other}}}"),
                )
                .unwrap();
            }),
        ),
        (
            ControlId::Screening,
            Box::new(move |r| {
                let ctx = Context::open(r).unwrap();
                screening::record(
                    &ctx.db,
                    "olga",
                    screening::ScreeningKind::Vog,
                    now - 400 * DAY_MS,
                    now - DAY_MS,
                    "admin",
                    now,
                )
                .unwrap();
            }),
        ),
        (
            ControlId::AccessReviews,
            Box::new(move |r| {
                let olga = account_id(r, "olga");
                sql(r, &format!(
                "UPDATE accounts SET created_at_ms = {} WHERE username = 'olga';
                 INSERT INTO sessions (token_sha256, account_id, csrf_token, created_at_ms, last_seen_ms)
                 VALUES ('t', {olga}, 'c', {now}, {now})", now - 200 * DAY_MS));
            }),
        ),
        (
            ControlId::AuditChain,
            Box::new(|r| sql(r, "UPDATE audit_log SET at_ms = at_ms + 1 WHERE seq = 3")),
        ),
        (
            ControlId::Keys,
            Box::new(move |r| {
                sql(
                    r,
                    &format!("UPDATE age_keys SET created_at_ms = {}", now - 400 * DAY_MS),
                )
            }),
        ),
        (
            ControlId::Revocations,
            Box::new(move |r| {
                sql(
                    r,
                    &format!("UPDATE stations SET revoked_at_ms = {now} WHERE name = 'home-1'"),
                )
            }),
        ),
        (
            ControlId::PrivacyBudgets,
            Box::new(|r| {
                sql(r,
            "INSERT INTO privacy_loss_periods (period, epsilon_sum, rho, epsilon_spent) VALUES ('2026', 20, 200, 20)")
            }),
        ),
        (
            ControlId::Retention,
            Box::new(move |r| {
                sql(
                    r,
                    &format!(
                        "INSERT INTO export_files (path, person_id, sha256, written_at_ms)
             VALUES ('exports/old.tar', 1, 'x', {})",
                        now - 60 * DAY_MS
                    ),
                )
            }),
        ),
        (
            ControlId::ConfigurationChanges,
            Box::new(|r| {
                let path = r.join("rules").join("alcohol.toml");
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(&path, format!("{text}\n# edited\n")).unwrap();
            }),
        ),
        (
            ControlId::Permissions,
            Box::new(|r| {
                std::fs::set_permissions(
                    r.join("state.sqlite"),
                    std::fs::Permissions::from_mode(0o644),
                )
                .unwrap();
            }),
        ),
    ];
    let mut untested: Vec<ControlId> = ControlId::ALL.to_vec();
    for (control, break_it) in breaks {
        let copy = tmp.path().join(control.as_str());
        copy_dir(&root, &copy);
        break_it(&copy);
        assert_eq!(
            failed(&copy, now),
            vec![control],
            "breaking {}",
            control.as_str()
        );
        untested.retain(|c| *c != control);
    }
    // The software control judges the binary (one polars, one arrow, ... compiled), not the data
    // directory: nothing in a copy can break it.
    assert_eq!(untested, vec![ControlId::Software]);
}

fn nachtwacht() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
}

fn report(data: &Path, out: &Path) -> std::process::Output {
    nachtwacht()
        .args(["compliance", "report", "--check", "--data-dir"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn the_demo_passes_every_control_and_a_world_readable_database_fails_only_permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo-data");
    let demo = nachtwacht()
        .args([
            "demo",
            "--exit-after",
            "1s",
            "--days",
            "1",
            "--quic-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );

    let html: PathBuf = tmp.path().join("report.html");
    let out = report(&data, &html);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(
        page.matches("data-verdict=\"pass\"").count(),
        ControlId::ALL.len(),
        "{stdout}"
    );

    let copy = tmp.path().join("copy");
    copy_dir(&data, &copy);
    std::fs::set_permissions(
        copy.join("state.sqlite"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = report(&copy, &html);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let failing: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failing.len(), 1, "{stdout}");
    assert!(failing[0].contains("permissions"), "{stdout}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<section id=\"permissions\" data-verdict=\"fail\">"));
}
