//! The README's main command, as a user runs it: `nachtwacht demo --exit-after …` exits 0 after
//! printing the alerts and a DP answer, and leaves Parquet datasets with pseudonyms only.

use std::process::Command;

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn parquet_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            parquet_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "parquet") {
            out.push(p);
        }
    }
}

#[test]
fn demo_prints_alerts_and_a_dp_answer_then_exits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo-data");
    let out = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["demo", "--exit-after", "2s", "--days", "2"])
        .args([
            "--quic-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("Alerts raised"), "{stdout}");
    assert!(stdout.contains("alcohol"), "no alcohol alert in:\n{stdout}");
    assert!(stdout.contains("DP answer"), "{stdout}");
    assert!(stdout.contains("Demo stopped."), "{stdout}");

    let mut files = Vec::new();
    parquet_files(&data.join("datasets"), &mut files);
    assert!(files.len() >= 2, "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for secret in ["AM-1001", "WB-2001", "DEMO-2026", "home-001"] {
            assert!(!contains(&bytes, secret), "{secret} in {}", f.display());
        }
    }
}
