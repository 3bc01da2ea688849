//! The administration commands as an operator runs them, through the real binary.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

fn nachtwacht(args: &[&str], data: &Path) -> Output {
    // `init` puts the state where the tests keep it (PostgreSQL when they have a server).
    let database = if args.first() == Some(&"init") {
        common::init_database_args()
    } else {
        Vec::new()
    };
    Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(args)
        .args(database)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn an_operator_initialises_enrolls_and_verifies_the_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    let init = ok(&nachtwacht(&["init"], &data));
    assert!(
        init.contains("TOTP secret") && init.contains("otpauth://totp/"),
        "{init}"
    );
    let again = nachtwacht(&["init"], &data);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    ok(&nachtwacht(&["check-config"], &data));
    ok(&nachtwacht(
        &[
            "person",
            "add",
            "--reference",
            "CASE-9",
            "--programme",
            "alcohol-ban",
        ],
        &data,
    ));
    let bad = nachtwacht(
        &[
            "person",
            "add",
            "--reference",
            "CASE-10",
            "--programme",
            "karaoke",
        ],
        &data,
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown programme"));
    ok(&nachtwacht(
        &[
            "device",
            "assign",
            "--serial",
            "AM-9",
            "--kind",
            "ankle-monitor",
            "--person-id",
            "1",
        ],
        &data,
    ));

    let station_file = tmp.path().join("home-9.toml");
    ok(&nachtwacht(
        &[
            "station",
            "add",
            "--name",
            "home-9",
            "--out",
            station_file.to_str().unwrap(),
        ],
        &data,
    ));
    let station = nachtwacht_station::StationConfig::load(&station_file).unwrap();
    assert_eq!(station.name, "home-9");
    assert!(
        station.key_pem.contains("PRIVATE KEY") && station.server_age_recipient.starts_with("age1")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&station_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let paired = ok(&nachtwacht(
        &["device", "pair", "--serial", "AM-9", "--station", "home-9"],
        &data,
    ));
    assert!(paired.contains("paired with station home-9"), "{paired}");
    let unknown = nachtwacht(
        &[
            "device",
            "pair",
            "--serial",
            "AM-404",
            "--station",
            "home-9",
        ],
        &data,
    );
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown device"));
    // The device is handed in: its assignment ends (once), and the audit log says who ended it.
    let returned = ok(&nachtwacht(
        &["device", "return", "--serial", "AM-9"],
        &data,
    ));
    assert!(
        returned.contains("no longer assigned to person 1"),
        "{returned}"
    );
    let again = nachtwacht(&["device", "return", "--serial", "AM-9"], &data);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no current assignment"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    ok(&nachtwacht(
        &["station", "revoke", "--name", "home-9"],
        &data,
    ));
    let rotated = ok(&nachtwacht(&["keys", "rotate"], &data));
    assert!(rotated.contains("New age recipient: age1"), "{rotated}");
    let identities = std::fs::read_to_string(data.join("keys/age-identity.txt")).unwrap();
    assert_eq!(
        identities
            .lines()
            .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
            .count(),
        2,
        "the old identity is kept"
    );
    let quarantined = ok(&nachtwacht(&["quarantine", "list"], &data));
    assert!(quarantined.contains("0 quarantined"), "{quarantined}");

    ok(&nachtwacht(
        &[
            "research",
            "add-project",
            "--name",
            "wodc",
            "--epsilon",
            "2",
        ],
        &data,
    ));
    // A token is held by a researcher whose staff screening is recorded.
    ok(&nachtwacht(
        &[
            "account",
            "add",
            "--username",
            "ria",
            "--role",
            "researcher",
        ],
        &data,
    ));
    let (on, until) = (
        (chrono::Utc::now() - chrono::Duration::days(30))
            .format("%Y-%m-%d")
            .to_string(),
        (chrono::Utc::now() + chrono::Duration::days(3 * 365))
            .format("%Y-%m-%d")
            .to_string(),
    );
    let screened = ok(&nachtwacht(
        &[
            "account",
            "screening",
            "--username",
            "ria",
            "--kind",
            "vog",
            "--screened-on",
            &on,
            "--expires",
            &until,
        ],
        &data,
    ));
    assert!(screened.contains("in force until"), "{screened}");
    let token = ok(&nachtwacht(
        &["research", "token", "--project", "wodc", "--holder", "ria"],
        &data,
    ));
    assert!(token.trim().starts_with("nwr_"));

    let audit = ok(&nachtwacht(&["audit", "verify"], &data));
    // the administrator's account, init, person, device, station add, device pair, device
    // return, station revoke, keys rotate, quarantine list, project, researcher account, its
    // screening, token.
    assert!(audit.contains("intact: 14 entries"), "{audit}");
    let returns: i64 = nachtwacht::base::context::Context::open(&data)
        .unwrap()
        .db
        .lock()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'device.return' AND object = 'AM-9'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(returns, 1);

    // Tampering with one entry is detected and the command fails.
    let ctx = nachtwacht::base::context::Context::open(&data).unwrap();
    let conn = ctx.db.lock();
    conn.execute(
        "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 4",
        [],
    )
    .unwrap();
    drop(conn);
    drop(ctx);
    let broken = nachtwacht(&["audit", "verify"], &data);
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stderr).contains("broken at entry 4"));
}

/// Started with umask 022, `init` and later commands still create every entry private (0600 and
/// 0700); a data directory that others can read is refused at start-up with a clear message.
/// Before the fix `state.sqlite` and the research datasets came out 0644 in 0755 folders.
#[test]
fn the_data_directory_is_private_whatever_the_umask_and_a_readable_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let with_umask_022 = |args: &[&str]| {
        Command::new("sh")
            .arg("-c")
            .arg("umask 022 && exec \"$@\"")
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_nachtwacht"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    ok(&with_umask_022(&["init"]));
    ok(&with_umask_022(&[
        "person",
        "add",
        "--reference",
        "CASE-1",
        "--programme",
        "alcohol-ban",
    ]));
    let mut stack = vec![data.clone()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
        seen += 1;
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(seen > 10, "{seen} entries");

    std::fs::set_permissions(
        data.join("state.sqlite"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args([
            "serve",
            "--quic-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            serve.kill().unwrap();
            panic!("serve started from a data directory others can read");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("refusing to serve") && stderr.contains("state.sqlite 644"),
        "{stderr}"
    );
}

/// `validate scr` lists the SCR peaks the stress pipeline finds in the real E4 sample: within the
/// recording, in time order. The recording is nearly flat (EDA below 0.12 µS), so there are some,
/// but fewer than one a minute (docs/validation.md).
#[test]
fn the_scr_peaks_of_the_e4_sample_are_listed_for_the_cross_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["validate", "scr", "--e4"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/e4-sample"))
        .output()
        .unwrap();
    let text = ok(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("ts_ms"));
    let peaks: Vec<i64> = lines.map(|l| l.parse().unwrap()).collect();
    // EDA.csv starts at 1560279825 s and holds 9,998 samples at 4 Hz.
    let (start, end) = (1_560_279_825_000, 1_560_279_825_000 + 9_998 * 250);
    assert!((1..=41).contains(&peaks.len()), "{} peaks", peaks.len());
    assert!(peaks.windows(2).all(|w| w[0] < w[1]));
    assert!(peaks.iter().all(|t| (start..end).contains(t)));
}

#[test]
fn decode_watch_runs_the_servers_decode_loop_until_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&nachtwacht(&["init"], &data));
    let mut watch = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["decode", "--watch", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        watch.try_wait().unwrap().is_none(),
        "decode --watch keeps running until it is stopped"
    );
    // SAFETY: kill(2) with a child's pid and a valid signal number.
    unsafe { libc::kill(watch.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = watch.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "decode --watch did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(watch.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("stop signal received"), "{stderr}");
}

/// `nachtwacht check` passes a fresh installation, and names every problem of a broken one at
/// once with its fix; `serve` refuses to start from it with the same list.
#[test]
fn check_reports_every_problem_at_once_and_serve_refuses_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&nachtwacht(&["init"], &data));
    let fine = ok(&nachtwacht(&["check"], &data));
    assert!(fine.contains("0 problem(s), 0 warning(s)"), "{fine}");

    std::fs::write(data.join("rules/tamper.toml"), "strap_open_minutes = -3\n").unwrap();
    std::fs::write(data.join("keys/pseudonym-keys.toml"), "garbage").unwrap();
    let out = nachtwacht(&["check"], &data);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("[rules]") && text.contains("[keys]") && text.contains("fix:"),
        "{text}"
    );
    assert!(text.contains("2 problem(s)"), "{text}");

    let serve = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args([
            "serve",
            "--quic-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success());
    assert!(
        stderr.contains("[rules]") && stderr.contains("[keys]"),
        "serve names both problems: {stderr}"
    );
}

/// The server's systemd unit in docs/ runs commands the binary accepts (its check passes on a
/// fresh installation) and keeps the hardening it promises.
#[test]
fn the_server_unit_runs_commands_the_binary_accepts() {
    let unit = include_str!("../docs/systemd/nachtwacht.service");
    for option in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "AmbientCapabilities=CAP_NET_ADMIN",
        "UMask=0077",
    ] {
        assert!(
            unit.lines().any(|l| l == option),
            "{option} not in the unit"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&nachtwacht(&["init"], &data));
    for key in ["ExecStartPre=", "ExecStart="] {
        let line = unit
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key}"));
        let mut args: Vec<String> = line[key.len()..]
            .split_whitespace()
            .skip(1)
            .map(|a| a.replace("/var/lib/nachtwacht", data.to_str().unwrap()))
            .collect();
        if key == "ExecStart=" {
            // Parsed, not run: clap refuses an unknown option before it reaches --help.
            args.push("--help".into());
        }
        let out = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
            .args(&args)
            .output()
            .unwrap();
        ok(&out);
    }
}

/// `init` with object storage names a store it cannot use before it makes anything for it: a
/// plain-HTTP endpoint without `--s3-allow-http`, and one where nothing answers.
#[test]
fn init_refuses_object_storage_it_cannot_write_to() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("s3-secret");
    std::fs::write(&secret, "not-a-real-key").unwrap();
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let init = |data: &Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
            .args(["init", "--s3-endpoint", &endpoint, "--s3-bucket", "b"])
            .args(["--s3-access-key-id", "k", "--s3-secret-key-file"])
            .arg(&secret)
            .args(extra)
            .arg("--data-dir")
            .arg(data)
            .output()
            .unwrap()
    };
    let plain = init(&tmp.path().join("a"), &[]);
    assert!(!plain.status.success());
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("plain HTTP"), "{said}");
    let down = init(&tmp.path().join("b"), &["--s3-allow-http"]);
    assert!(!down.status.success());
    let said = String::from_utf8_lossy(&down.stderr);
    assert!(said.contains("object storage"), "{said}");
}
