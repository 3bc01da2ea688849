//! `bench ingest` as a user runs it, at a size a test can afford: every phase runs against real
//! `serve --roles ingest` child processes (one, then two nodes on one data directory) and every
//! upload is acknowledged, in each of two runs from fresh data directories, and every station
//! resumes its TLS session when the server restarts for the cold herd. The figures themselves are
//! the benchmark's business, not the test's; the test checks that they are read.

use std::process::Command;

#[test]
fn bench_ingest_runs_every_phase_on_one_node_and_on_two() {
    let stdout = bench_ingest(&[
        "--stations",
        "6",
        "--bundles-per-station",
        "2",
        "--idle",
        "4",
        "--paced-interval-secs",
        "1",
        "--nodes",
        "2",
        "--runs",
        "2",
    ]);
    for section in [
        "== herd: 6 connected stations × 2 bundles",
        "== cold herd:",
        "== paced:",
        "== herd on 2 ingest nodes",
        "== idle connections ==",
        "4 connected in",
    ] {
        assert!(stdout.contains(section), "no {section:?} in:\n{stdout}");
    }
    // The one node's group commits stored the three phases' bundles (6 × 2 each) and, when the
    // station agent is built beside the server (`cargo test --workspace` builds it), the agent's
    // 24: every upload acknowledged, none twice.
    let agent = std::path::Path::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .with_file_name("nachtwacht-station")
        .exists();
    let agent_bundles = if agent {
        24
    } else {
        assert!(stdout.contains("not measured"), "{stdout}");
        0
    };
    let stored: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.split_once(" bundles stored in "))
        .map(|(n, _)| n.trim().parse::<u64>().unwrap())
        .collect();
    // The station agent runs in the last run only.
    assert_eq!(
        stored,
        vec![3 * 6 * 2, 3 * 6 * 2 + agent_bundles],
        "{stdout}"
    );
    // Three phases per run, and the two-node herd in the last.
    assert_eq!(
        stdout.matches("busy answers                  0").count(),
        3 * 2 + 1,
        "{stdout}"
    );
    // Each one-node phase says how long its group commits took, read from the server's metrics.
    // A phase of 12 small bundles can take under 5 ms (printed 0.00 s, as on PostgreSQL without
    // fsync in CI), so the phases together, not each, must show some time.
    let commit_busy: Vec<f64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("group commit busy"))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(commit_busy.len(), 3 * 2, "{stdout}");
    assert!(commit_busy.iter().all(|s| *s >= 0.0), "{commit_busy:?}");
    assert!(commit_busy.iter().sum::<f64>() > 0.0, "{commit_busy:?}");
    // Each one-node phase counts the datagrams the stations exchanged with the server: a bundle
    // took some from the server (at least its acknowledgement) and more to it (its body).
    let datagrams: Vec<(f64, f64)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("datagrams per bundle"))
        .map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let to = words[words.len() - 3];
            (words[0].parse().unwrap(), to.parse().unwrap())
        })
        .collect();
    assert_eq!(datagrams.len(), 3 * 2, "{stdout}");
    assert!(
        datagrams.iter().all(|&(from, to)| from >= 1.0 && to > from),
        "{datagrams:?}"
    );
    for summary in [
        "== sqlite: 2 runs, each from a fresh data directory ==",
        "\nmedian ",
        "\nworst ",
        "cold herds: 12 connections resumed a session, 0 made a full handshake",
    ] {
        assert!(stdout.contains(summary), "no {summary:?} in:\n{stdout}");
    }
}

/// `--idle 0` asks for no idle connections: no per-connection figure is printed for them.
#[test]
fn bench_ingest_without_idle_connections_prints_no_idle_figure() {
    let stdout = bench_ingest(&[
        "--stations",
        "3",
        "--bundles-per-station",
        "1",
        "--idle",
        "0",
        "--paced-interval-secs",
        "1",
        "--nodes",
        "1",
        "--runs",
        "1",
    ]);
    assert!(stdout.contains("== paced:"), "{stdout}");
    assert!(!stdout.contains("RSS per idle conn"), "{stdout}");
}

/// Runs `nachtwacht bench ingest` with `args`; it must succeed. Its standard output.
fn bench_ingest(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["bench", "ingest"])
        .args(args)
        .output()
        .expect("run nachtwacht bench ingest");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
