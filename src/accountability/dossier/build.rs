//! Building a dossier from the database, the datasets and the evidence store.

use std::collections::{BTreeMap, BTreeSet};

use crate::base::db::OptionalExtension;
use nachtwacht_wire::{BundleId, Signal};
use sha2::{Digest, Sha256};

use super::*;
use crate::alerts::casework::{self, AlertDetail, Reader, WINDOW_MS};
use crate::alerts::chart::TacChart;
use crate::base::html::esc;
use crate::base::Context;
use crate::evaluate::rules_files::{self, RuleFile};
use crate::trust::audit::{self, custody::CustodyStep};

/// A dossier as built: the archive and what it holds.
#[derive(Debug, Clone)]
pub struct Dossier {
    pub archive: Vec<u8>,
    /// SHA-256 of the whole archive (hex), as recorded in the audit entry `dossier.written`.
    pub sha256: String,
    /// Member name and SHA-256, in archive order (the manifest and signature not included).
    pub members: Vec<(String, String)>,
    /// Bundles whose ciphertexts are enclosed, and those whose evidence copy was already pruned.
    pub ciphertexts: usize,
    pub pruned: Vec<String>,
    pub readings: usize,
}

/// One row of the bundle registry, as the dossier needs it.
struct BundleRow {
    id: String,
    station_id: i64,
    sha256: String,
    size: i64,
    received_at_ms: i64,
    processed_at_ms: Option<i64>,
    state: String,
    signed_by: Option<String>,
    stored_seq: Option<i64>,
    decoded_seq: Option<i64>,
}

/// Builds the dossier of alert `alert_id` for `reader`: an officer (their caseload only, with a
/// screening in force; the read is audited as `alert.dossier` like any other) or the operator.
/// The finished archive is audited as `dossier.written` with its SHA-256.
pub fn build(ctx: &Context, reader: Reader<'_>, alert_id: i64, now_ms: i64) -> Result<Dossier> {
    let d = casework::detail_as(ctx, reader, alert_id, "dossier", now_ms)?;
    let (from_ms, to_ms) = (d.alert.start_ms - WINDOW_MS, d.alert.end_ms + WINDOW_MS);
    let pid =
        crate::trust::pseudonym::Pseudonymiser::load(&ctx.dir)?.operational(d.alert.person_id);

    let mut members: Vec<(String, Vec<u8>)> =
        vec![("README.txt".into(), README.as_bytes().to_vec())];
    let mut bundle_ids: BTreeSet<String> = BTreeSet::new();
    let mut readings_members = Vec::new();
    let mut readings = 0;
    for signal in SIGNALS {
        let (csv, ids, rows) = readings_csv(ctx, signal, &pid, from_ms, to_ms)?;
        if rows > 0 {
            readings += rows;
            bundle_ids.extend(ids);
            readings_members.push((readings_member(signal), csv));
        }
    }
    // The bundles the alert names as its evidence, besides those carrying the readings shown.
    bundle_ids.extend(
        d.alert
            .evidence_bundles
            .split(',')
            .filter(|b| BundleId::from_hex(b).is_some())
            .map(String::from),
    );

    let conn_rows = bundle_rows(ctx, &bundle_ids)?;
    let identities = crate::trust::secrets::load_age_identities(&ctx.dir.age_identity())?;
    let mut signatures = String::from("bundle_id,sha256,station,station_public_key,signature\n");
    let mut evidence_members = Vec::new();
    let mut pruned = Vec::new();
    let station_names = station_names(ctx)?;
    for b in &conn_rows {
        let id = BundleId::from_hex(&b.id).expect("ids were checked");
        let key = crate::base::blobs::Key::evidence(&id, b.received_at_ms);
        let Some(ciphertext) = ctx.blobs.get(&key)? else {
            pruned.push(b.id.clone());
            continue;
        };
        let (station, signature) = signature_inside(&ciphertext, &identities);
        signatures += &format!(
            "{},{},{},{},{}\n",
            b.id,
            hex::encode(Sha256::digest(&ciphertext)),
            audit::csv_field(&station.unwrap_or_else(|| {
                station_names
                    .get(&b.station_id)
                    .cloned()
                    .unwrap_or_default()
            })),
            b.signed_by.clone().unwrap_or_default(),
            signature.unwrap_or_default(),
        );
        evidence_members.push((evidence_member(&b.id), ciphertext));
    }

    let chart = chart_svg(&d, from_ms, to_ms);
    let rules_at = rules_in_force_at(ctx, last_evaluated_ms(&d))?;
    let custody = custody_json(ctx, alert_id, &conn_rows)?;
    let accesses = audit::to_json(&audit::entries_about(
        &ctx.db.lock(),
        &format!("alert:{alert_id}"),
    )?);
    let alert_json = alert_json(&d, from_ms, to_ms, &pid);
    let report = report_html(
        &d,
        &chart,
        &rules_at,
        &conn_rows,
        &pruned,
        readings,
        now_ms,
        reader.name(),
    );

    members.push(("report.html".into(), report.into_bytes()));
    members.push(("chart.svg".into(), chart.into_bytes()));
    members.push(("alert.json".into(), pretty(&alert_json)));
    members.extend(readings_members);
    members.push(("rules.json".into(), pretty(&rules_at)));
    members.extend(evidence_members);
    let ciphertexts = members.iter().filter(|(n, _)| n.ends_with(".age")).count();
    members.push((SIGNATURES_CSV.into(), signatures.into_bytes()));
    members.push((
        "station.json".into(),
        pretty(&station_json(ctx, &d, from_ms, to_ms, &conn_rows)?),
    ));
    members.push(("custody.json".into(), pretty(&custody)));
    members.push(("workflow.csv".into(), workflow_csv(&d).into_bytes()));
    members.push(("accesses.json".into(), accesses.into_bytes()));

    let listed: Vec<(String, String)> = members
        .iter()
        .map(|(n, b)| (n.clone(), hex::encode(Sha256::digest(b))))
        .collect();
    let manifest = serde_json::json!({
        "format": FORMAT,
        "alert_id": alert_id,
        "person_reference": d.alert.person_reference,
        "generated_at_ms": now_ms,
        "generated_by": reader.name(),
        "members": members.iter().zip(&listed).map(|((n, b), (_, sha))| {
            serde_json::json!({"name": n, "sha256": sha, "bytes": b.len()})
        }).collect::<Vec<_>>(),
    });
    let manifest = pretty(&manifest);
    let (public_key, signature) = audit::checkpoint::sign(&ctx.dir, &manifest)?;
    let signature = serde_json::json!({
        "algorithm": "Ed25519",
        "signed": MANIFEST,
        "public_key": public_key,
        "signature": signature,
    });
    members.push((MANIFEST.into(), manifest));
    members.push((SIGNATURE.into(), pretty(&signature)));
    let archive = crate::base::archive::tar(&members, now_ms).map_err(Error::Archive)?;
    let sha256 = hex::encode(Sha256::digest(&archive));
    audit::append(
        &ctx.db.lock(),
        now_ms,
        reader.name(),
        "dossier.written",
        &format!("alert:{alert_id}"),
        &serde_json::json!({"sha256": sha256, "members": members.len(),
                            "ciphertexts": ciphertexts, "readings": readings})
        .to_string(),
    )?;
    Ok(Dossier {
        archive,
        sha256,
        members: listed,
        ciphertexts,
        pruned,
        readings,
    })
}

const README: &str = include_str!("readme.txt");

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(v).expect("JSON values serialise");
    text.push('\n');
    text.into_bytes()
}

fn day(ms: i64) -> String {
    crate::base::time::date_of(ms)
}

/// The person's readings of `signal` in `[from_ms, to_ms]`, each (pseudonym, timestamp) once
/// (the first in catalog path order, as every reader counts them): the CSV, the bundles that
/// carried them, and the number of rows.
fn readings_csv(
    ctx: &Context,
    signal: Signal,
    pid: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<(Vec<u8>, BTreeSet<String>, usize)> {
    use arrow::array::{Array, StringArray};
    let readers = crate::dataset::Readers::of(ctx)?;
    let files = readers.signal_files_between(
        signal,
        &day(from_ms),
        &day(to_ms + crate::base::time::DAY_MS),
    )?;
    let mut rows: BTreeMap<i64, String> = BTreeMap::new();
    let mut bundles = BTreeSet::new();
    for file in files {
        for batch in crate::dataset::read_parquet_batches(&file)? {
            let batch = batch?;
            let strings = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
            };
            let (Some(pids), Some(ids)) = (strings("pid"), strings("bundle_id")) else {
                continue;
            };
            for i in 0..batch.num_rows() {
                if pids.is_null(i) || pids.value(i) != pid {
                    continue;
                }
                let (ts, fields) = wire_fields(signal, &batch, i)?;
                if ts < from_ms || ts > to_ms || rows.contains_key(&ts) {
                    continue;
                }
                let id = ids.value(i).to_string();
                rows.insert(ts, format!("{},{id}\n", fields.join(",")));
                bundles.insert(id);
            }
        }
    }
    let mut csv = csv_header(signal);
    csv.push('\n');
    let n = rows.len();
    for row in rows.into_values() {
        csv += &row;
    }
    Ok((csv.into_bytes(), bundles, n))
}

fn bundle_rows(ctx: &Context, ids: &BTreeSet<String>) -> Result<Vec<BundleRow>> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare(
        "SELECT bundle_id, station_id, sha256, size, received_at_ms, processed_at_ms, state,
                signed_by, stored_audit_seq, decoded_audit_seq
           FROM bundles WHERE bundle_id = ?1",
    )?;
    let mut out = Vec::new();
    for id in ids {
        let row = stmt
            .query_row([id], |r| {
                Ok(BundleRow {
                    id: r.get(0)?,
                    station_id: r.get(1)?,
                    sha256: r.get(2)?,
                    size: r.get(3)?,
                    received_at_ms: r.get(4)?,
                    processed_at_ms: r.get(5)?,
                    state: r.get(6)?,
                    signed_by: r.get(7)?,
                    stored_seq: r.get(8)?,
                    decoded_seq: r.get(9)?,
                })
            })
            .optional()?;
        out.extend(row);
    }
    Ok(out)
}

fn station_names(ctx: &Context) -> Result<BTreeMap<i64, String>> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare("SELECT id, name FROM stations")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The station name and Ed25519 signature inside a ciphertext, read with the server's keys.
fn signature_inside(
    ciphertext: &[u8],
    identities: &[age::x25519::Identity],
) -> (Option<String>, Option<String>) {
    let Ok(plaintext) = super::verify::decrypt(ciphertext, identities) else {
        return (None, None);
    };
    match nachtwacht_wire::signed::decode_signed(&plaintext) {
        Ok(s) => (Some(s.station.to_string()), Some(hex::encode(s.signature))),
        Err(_) => (None, None),
    }
}

/// When the alert was last evaluated: its latest revision, or its creation.
fn last_evaluated_ms(d: &AlertDetail) -> i64 {
    d.revisions
        .iter()
        .map(|r| r.at_ms)
        .max()
        .unwrap_or(d.alert.start_ms)
        .max(d.alert.created_at_ms)
}

/// The values of each rule file in force at `at_ms`: the file in force now, with every change
/// recorded after `at_ms` undone (each `rules.changed` entry holds every changed key, old and
/// new). The version is the audit entry of the last change at or before `at_ms`, or the shipped
/// defaults when there was none.
fn rules_in_force_at(ctx: &Context, at_ms: i64) -> Result<serde_json::Value> {
    let conn = ctx.db.lock();
    let mut files = Vec::new();
    for f in RuleFile::ALL {
        let object = format!("rules/{}", f.file_name());
        let text: Option<String> = conn
            .query_row(
                "SELECT content FROM rules_in_force WHERE file = ?1",
                [f.file_name()],
                |r| r.get(0),
            )
            .optional()?;
        let mut values = rules_files::values(text.as_deref().unwrap_or(f.defaults()));
        let changes = audit::entries_about(&conn, &object)?;
        let mut version = serde_json::json!({"since": "shipped defaults"});
        for e in changes.iter().rev() {
            if e.action != "rules.changed" {
                continue;
            }
            if e.at_ms <= at_ms {
                version = serde_json::json!({"audit_seq": e.seq, "audit_hash": e.hash,
                                             "since_ms": e.at_ms});
                break;
            }
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
            for change in detail["changes"].as_array().into_iter().flatten() {
                let Some(key) = change["key"].as_str() else {
                    continue;
                };
                match change["old"].as_str() {
                    Some(old) => values.insert(key.to_string(), old.to_string()),
                    None => values.remove(key),
                };
            }
        }
        let digest = hex::encode(Sha256::digest(
            serde_json::to_string(&values)
                .expect("a map of strings")
                .as_bytes(),
        ));
        files.push(serde_json::json!({"file": object, "version": version,
                                      "values_sha256": digest, "values": values}));
    }
    Ok(serde_json::json!({"in_force_at_ms": at_ms, "files": files}))
}

fn alert_json(d: &AlertDetail, from_ms: i64, to_ms: i64, pid: &str) -> serde_json::Value {
    let a = &d.alert;
    serde_json::json!({
        "id": a.id,
        "person_reference": a.person_reference,
        "operational_pseudonym": pid,
        "programme": a.programme.as_str(),
        "kind": a.kind.as_str(),
        "severity": a.severity.as_str(),
        "start_ms": a.start_ms,
        "end_ms": a.end_ms,
        "created_at_ms": a.created_at_ms,
        "peak_tac_g_dl": a.peak_tac_g_dl,
        "threshold_g_dl": d.threshold_g_dl,
        "rule": serde_json::from_str::<serde_json::Value>(&a.rule).unwrap_or(serde_json::Value::String(a.rule.clone())),
        "evidence_bundles": a.evidence_bundles,
        "status": a.status.as_str(),
        "provisional": a.provisional,
        "revision": a.revision,
        "withdrawn": a.withdrawn,
        "revisions": d.revisions.iter().map(|r| serde_json::json!({
            "revision": r.revision, "at_ms": r.at_ms,
            "reason": r.reason.map(|x| x.code()), "before": r.before, "after": r.after,
        })).collect::<Vec<_>>(),
        "window": {"from_ms": from_ms, "to_ms": to_ms},
    })
}

fn station_json(
    ctx: &Context,
    d: &AlertDetail,
    from_ms: i64,
    to_ms: i64,
    bundles: &[BundleRow],
) -> Result<serde_json::Value> {
    let conn = ctx.db.lock();
    let person = d.alert.person_id;
    let mut assignments = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT a.device_serial, d.kind, a.valid_from_ms, a.valid_to_ms
               FROM assignments a JOIN devices d ON d.serial = a.device_serial
              WHERE a.person_id = ?1 ORDER BY a.valid_from_ms",
        )?;
        let rows = stmt.query_map([person], |r| {
            Ok(serde_json::json!({"device_serial": r.get::<_, String>(0)?, "kind": r.get::<_, String>(1)?,
                                  "valid_from_ms": r.get::<_, i64>(2)?, "valid_to_ms": r.get::<_, Option<i64>>(3)?}))
        })?;
        for r in rows {
            assignments.push(r?);
        }
    }
    let mut pairings = Vec::new();
    let mut station_ids: BTreeSet<i64> = bundles.iter().map(|b| b.station_id).collect();
    {
        let mut stmt = conn.prepare(
            "SELECT p.device_serial, p.station_id, s.name, p.valid_from_ms, p.valid_to_ms
               FROM device_pairings p JOIN stations s ON s.id = p.station_id
              WHERE p.device_serial IN (SELECT device_serial FROM assignments WHERE person_id = ?1)
                AND p.valid_from_ms <= ?3 AND (p.valid_to_ms IS NULL OR p.valid_to_ms >= ?2)
              ORDER BY p.valid_from_ms",
        )?;
        let rows = stmt.query_map(crate::params![person, from_ms, to_ms], |r| {
            Ok((
                r.get::<_, i64>(1)?,
                serde_json::json!({"device_serial": r.get::<_, String>(0)?, "station": r.get::<_, String>(2)?,
                                   "valid_from_ms": r.get::<_, i64>(3)?, "valid_to_ms": r.get::<_, Option<i64>>(4)?}),
            ))
        })?;
        for r in rows {
            let (id, v) = r?;
            station_ids.insert(id);
            pairings.push(v);
        }
    }
    let home: Vec<i64> = {
        let mut stmt = conn.prepare("SELECT id FROM stations WHERE person_id = ?1")?;
        let rows = stmt.query_map([person], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    station_ids.extend(home.iter().copied());
    let mut stations = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT name, cert_sha256, cert_serial, signing_public_key, enrolled_at_ms, revoked_at_ms
               FROM stations WHERE id = ?1",
        )?;
        for id in &station_ids {
            let v = stmt.query_row([id], |r| {
                Ok(serde_json::json!({"name": r.get::<_, String>(0)?, "certificate_sha256": r.get::<_, String>(1)?,
                    "certificate_serial": r.get::<_, Option<String>>(2)?,
                    "signing_public_key": r.get::<_, Option<String>>(3)?,
                    "enrolled_at_ms": r.get::<_, i64>(4)?, "revoked_at_ms": r.get::<_, Option<i64>>(5)?,
                    "home_of_person": home.contains(id)}))
            })?;
            stations.push(v);
        }
    }
    Ok(
        serde_json::json!({"stations": stations, "device_assignments": assignments,
                          "device_pairings": pairings}),
    )
}

/// One custody step of a bundle: the audit entry and the batch list it commits to.
fn custody_step(
    conn: &crate::base::db::Connection,
    step: CustodyStep,
    seq: Option<i64>,
) -> Result<serde_json::Value> {
    let Some(seq) = seq else {
        return Ok(serde_json::json!({"recorded": false,
            "note": "the bundle predates custody entries in the audit log"}));
    };
    let Some(entry) = audit::entry(conn, seq)? else {
        return Ok(serde_json::json!({"recorded": false, "audit_seq": seq,
            "note": "the entry is before the audit log's retention horizon"}));
    };
    let batch = audit::custody::batch_of(conn, step, seq)?;
    let entry: serde_json::Value =
        serde_json::from_str(&audit::to_json(std::slice::from_ref(&entry))).expect("JSON");
    Ok(serde_json::json!({
        "recorded": true,
        "entry": entry[0],
        "batch": batch.iter().map(|(id, sha)| format!("{id} {sha}")).collect::<Vec<_>>(),
    }))
}

fn custody_json(ctx: &Context, alert_id: i64, bundles: &[BundleRow]) -> Result<serde_json::Value> {
    let conn = ctx.db.lock();
    let mut out = Vec::new();
    for b in bundles {
        out.push(serde_json::json!({
            "bundle_id": b.id,
            "sha256": b.sha256,
            "bytes": b.size,
            "state": b.state,
            "received_at_ms": b.received_at_ms,
            "stored": custody_step(&conn, CustodyStep::Stored, b.stored_seq)?,
            "decoded_at_ms": b.processed_at_ms,
            "decoded": custody_step(&conn, CustodyStep::Decoded, b.decoded_seq)?,
        }));
    }
    let seals: Vec<audit::Entry> = audit::entries_about(&conn, &format!("alert:{alert_id}"))?
        .into_iter()
        .filter(|e| e.action == audit::seal::ACTION)
        .collect();
    let seals: serde_json::Value = serde_json::from_str(&audit::to_json(&seals)).expect("JSON");
    let head: Option<(i64, String)> = audit::head(&conn)?;
    let checkpoint = audit::checkpoint::all(&ctx.dir)?.pop().map(|(_, c)| c);
    Ok(serde_json::json!({
        "bundles": out,
        "evaluated": {"seals": seals},
        "audit_head": head.map(|(seq, hash)| serde_json::json!({"seq": seq, "hash": hash})),
        "latest_checkpoint": checkpoint,
    }))
}

fn workflow_csv(d: &AlertDetail) -> String {
    let mut out = String::from("at_ms,at_utc,actor,from_status,to_status,comment\n");
    for s in &d.steps {
        out += &format!(
            "{},{},{},{},{},{}\n",
            s.at_ms,
            crate::base::time::date_time_of(s.at_ms),
            audit::csv_field(&s.actor),
            s.from_status.as_str(),
            s.to_status.as_str(),
            audit::csv_field(&s.comment)
        );
    }
    out
}

fn chart_svg(d: &AlertDetail, from_ms: i64, to_ms: i64) -> String {
    TacChart {
        from_ms,
        to_ms,
        readings: &d.tac,
        threshold_g_dl: d.threshold_g_dl,
        alert: (d.alert.start_ms, d.alert.end_ms),
        contacts: &d.station_contacts,
        // Short: the strip labels share the narrow left margin with the axis.
        labels: ("gedragen", "contact"),
        // The dossier states every time in UTC, the chart included.
        zone: crate::base::time::Zone::UTC,
        time_title: "tijd / time",
        gap_labels: ["niet gedragen", "geen contact", "nog niet ontvangen"],
    }
    .svg()
}

#[allow(clippy::too_many_arguments)]
fn report_html(
    d: &AlertDetail,
    chart: &str,
    rules: &serde_json::Value,
    bundles: &[BundleRow],
    pruned: &[String],
    readings: usize,
    now_ms: i64,
    by: &str,
) -> String {
    let a = &d.alert;
    let t = crate::base::time::date_time_of;
    let rule = serde_json::from_str::<serde_json::Value>(&a.rule)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or_else(|_| a.rule.clone());
    let custody: String = bundles
        .iter()
        .map(|b| {
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&b.id),
                t(b.received_at_ms),
                b.stored_seq
                    .map(|s| format!("#{s}"))
                    .unwrap_or_else(|| "—".into()),
                b.processed_at_ms.map(t).unwrap_or_else(|| "—".into()),
                if pruned.contains(&b.id) {
                    "verwijderd (bewaartermijn) / pruned"
                } else {
                    "bijgevoegd / enclosed"
                },
            )
        })
        .collect();
    let workflow: String = if d.steps.is_empty() {
        "<tr><td>nog geen stappen / no steps yet</td></tr>".into()
    } else {
        d.steps
            .iter()
            .map(|s| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td></tr>",
                    t(s.at_ms),
                    esc(&s.actor),
                    s.from_status.as_str(),
                    s.to_status.as_str(),
                    esc(&s.comment)
                )
            })
            .collect()
    };
    let rule_files: String = rules["files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let v = &f["version"];
            let version = match v["audit_seq"].as_i64() {
                Some(seq) => format!(
                    "gewijzigd / changed {} (audit #{seq})",
                    v["since_ms"].as_i64().map(t).unwrap_or_default()
                ),
                None => "standaardwaarden / shipped defaults".to_string(),
            };
            format!(
                "<li><code>{}</code>: {} — <code>values_sha256 {}</code></li>",
                esc(f["file"].as_str().unwrap_or_default()),
                esc(&version),
                esc(&f["values_sha256"].as_str().unwrap_or_default()
                    [..16.min(f["values_sha256"].as_str().unwrap_or_default().len())])
            )
        })
        .collect();
    format!(
        "<!doctype html><html lang=\"nl\"><head><meta charset=\"utf-8\">\
         <title>Bewijsdossier melding {id}</title>\
         <style>body{{font-family:sans-serif;max-width:48em;margin:1em auto}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #999;padding:2px 6px;text-align:left}}@media print{{a{{display:none}}}}</style></head><body>\
         <h1>Bewijsdossier / Evidence dossier — melding / alert {id}</h1>\
         <table><tr><th>Zaak / Case</th><td>{reference}</td></tr>\
         <tr><th>Soort / Kind</th><td>{kind} ({severity})</td></tr>\
         <tr><th>Periode / Period (UTC)</th><td>{start} — {end}</td></tr>\
         <tr><th>Piek TAC / Peak TAC</th><td>{peak}</td></tr>\
         <tr><th>Drempel / Threshold</th><td>{threshold} g/dL</td></tr>\
         <tr><th>Status</th><td>{status}{withdrawn}</td></tr>\
         <tr><th>Metingen / Readings</th><td>{readings} (readings/*.csv)</td></tr></table>\
         <h2>Grafiek / Chart</h2><p>TAC in g/dL (transdermale alcoholconcentratie), tijd in UTC; \
         de stippellijn is de drempel, het gearceerde vlak de periode van de melding.</p>{chart}\
         <h2>Regel die afging / Rule that fired</h2><pre>{rule}</pre>\
         <h2>Regels van kracht / Rules in force</h2><ul>{rule_files}</ul>\
         <h2>Bewijsketen / Chain of custody</h2><table><tr><th>Bundel / Bundle</th><th>Ontvangen / Received</th>\
         <th>Opgeslagen (audit) / Stored</th><th>Gedecodeerd / Decoded</th><th>Versleuteld origineel / Ciphertext</th></tr>{custody}</table>\
         <h2>Afhandeling / Workflow</h2><table>{workflow}</table>\
         <p>Opgesteld / Generated {now} door / by {by}. Controle / Check: <code>nachtwacht dossier verify</code> \
         (zie README.txt / see README.txt).</p></body></html>",
        id = a.id,
        reference = esc(&a.person_reference),
        kind = a.kind.as_str(),
        severity = a.severity.as_str(),
        start = t(a.start_ms),
        end = t(a.end_ms),
        peak = a.peak_tac_g_dl.map(|p| format!("{p:.3} g/dL")).unwrap_or_else(|| "—".into()),
        threshold = d.threshold_g_dl,
        status = a.status.as_str(),
        withdrawn = if a.withdrawn { " (ingetrokken / withdrawn)" } else { "" },
        rule = esc(&rule),
        now = t(now_ms),
        by = esc(by),
    )
}
