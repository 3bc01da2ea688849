//! The operator's rule files in the data directory: written by `init`, read by the server and by
//! `nachtwacht pipeline run`, validated all at once, and every change audited with old and new
//! values.

use crate::common;

use std::path::Path;
use std::process::Command;

use nachtwacht::base::Context;

fn initialised(tmp: &tempfile::TempDir) -> Context {
    let root = tmp.path().join("data");
    nachtwacht::server::init::init(
        &root,
        &common::test_config(),
        nachtwacht::base::time::now_ms(),
    )
    .unwrap();
    Context::open(&root).unwrap()
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

fn changes(ctx: &Context) -> Vec<(String, String)> {
    let conn = ctx.db.lock();
    let mut stmt = conn
        .prepare("SELECT object, detail FROM audit_log WHERE action = 'rules.changed' ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_changed_threshold_is_applied_and_audited_with_old_and_new_value() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = initialised(&tmp);
    let alcohol = ctx.dir.rules().join("alcohol.toml");
    assert_eq!(
        std::fs::read_to_string(&alcohol).unwrap(),
        nachtwacht_pipelines::rules::ALCOHOL_DEFAULTS
    );
    let rules = nachtwacht::evaluate::rules_files::load(&ctx.dir, &ctx.db, "system", 1).unwrap();
    assert_eq!(rules, nachtwacht::evaluate::Rules::default());
    assert!(
        changes(&ctx).is_empty(),
        "the shipped defaults are no change"
    );

    edit(&alcohol, "threshold_g_dl = 0.02", "threshold_g_dl = 0.03");
    let rules = nachtwacht::evaluate::rules_files::load(&ctx.dir, &ctx.db, "system", 2).unwrap();
    assert_eq!(rules.alcohol.threshold_g_dl, 0.03);
    assert_eq!(rules.alcohol.limits().threshold_ug, 30_000);
    let found = changes(&ctx);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "rules/alcohol.toml");
    let detail: serde_json::Value = serde_json::from_str(&found[0].1).unwrap();
    assert_eq!(
        detail["changes"],
        serde_json::json!([{"key": "threshold_g_dl", "old": "0.02", "new": "0.03"}])
    );
    // Loading the same rules again is no change.
    nachtwacht::evaluate::rules_files::load(&ctx.dir, &ctx.db, "system", 3).unwrap();
    assert_eq!(changes(&ctx).len(), 1);
}

#[test]
fn every_problem_of_every_rule_file_is_reported_at_once_and_stops_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = initialised(&tmp);
    edit(
        &ctx.dir.rules().join("alcohol.toml"),
        "threshold_g_dl = 0.02",
        "threshold_g_dl = 0.0",
    );
    edit(
        &ctx.dir.rules().join("tamper.toml"),
        "ir_deviation_fraction = 0.3",
        "ir_deviation_fraction = 2",
    );
    let err = nachtwacht::evaluate::rules_files::load(&ctx.dir, &ctx.db, "system", 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rules/alcohol.toml") && err.contains("threshold_g_dl"),
        "{err}"
    );
    assert!(
        err.contains("rules/tamper.toml") && err.contains("ir_deviation_fraction"),
        "{err}"
    );
    drop(ctx);
    let out = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["pipeline", "run", "--data-dir"])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("threshold_g_dl") && stderr.contains("ir_deviation_fraction"),
        "{stderr}"
    );
}
