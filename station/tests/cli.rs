//! The station binary as an operator meets it. (These tests also make `cargo test --workspace`
//! build the binary, which the server's crash tests start and kill.)

use std::process::Command;

fn station() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nachtwacht-station"))
}

#[test]
fn help_names_the_run_command() {
    let out = station().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("run"));
}

#[test]
fn a_broken_config_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    std::fs::write(&path, "name = \"x\"\nunknown_key = 1\n").unwrap();
    let out = station()
        .args(["run", "--once", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("station.toml"), "{err}");
}
