//! Checking a dossier offline: from the archive alone (and, for the readings, the server's age
//! identities). Nothing here opens a data directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nachtwacht_wire::Signal;
use sha2::{Digest, Sha256};

use super::*;
use crate::trust::audit::{self, checkpoint};

/// Something wrong with a dossier, naming the member it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub member: String,
    pub reason: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    pub alert_id: i64,
    /// The key that signed the manifest (hex): compare it with the installation's, e.g. the
    /// `public_key` of its audit checkpoints.
    pub public_key: String,
    pub problems: Vec<Problem>,
    /// What was checked and held, one line each.
    pub checked: Vec<String>,
    /// What could not be checked (no identity given, evidence pruned), one line each.
    pub unchecked: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, member: &str, reason: impl Into<String>) {
        self.problems.push(Problem {
            member: member.to_string(),
            reason: reason.into(),
        });
    }
}

/// Decrypts a ciphertext with any of `identities`.
pub(super) fn decrypt(
    ciphertext: &[u8],
    identities: &[age::x25519::Identity],
) -> std::result::Result<Vec<u8>, String> {
    let decryptor = age::Decryptor::new_buffered(ciphertext).map_err(|e| e.to_string())?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(ciphertext.len());
    std::io::Read::read_to_end(&mut reader, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Checks a dossier: the server's signature of the manifest (and, with `pinned_key`, that it is
/// that key), every member's SHA-256 against the manifest, no member missing or added, the audit
/// entries' hashes and the custody batches, and with `identities` that every enclosed ciphertext
/// decrypts, carries a valid signature of its station, decodes, and holds exactly the readings
/// the CSVs attribute to it within the window.
pub fn verify(
    archive: &[u8],
    identities: Option<&[age::x25519::Identity]>,
    pinned_key: Option<&str>,
) -> Verification {
    let mut v = Verification::default();
    let members = match crate::base::archive::untar(archive, MAX_DOSSIER_BYTES) {
        Ok(m) => m,
        Err(e) => {
            v.problem("(archive)", format!("not a readable tar archive: {e}"));
            return v;
        }
    };
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (name, bytes) in members {
        if files.insert(name.clone(), bytes).is_some() {
            v.problem(&name, "appears twice in the archive");
        }
    }
    let Some(manifest_bytes) = files.get(MANIFEST).cloned() else {
        v.problem(MANIFEST, "missing");
        return v;
    };
    check_signature(&mut v, &files, &manifest_bytes, pinned_key);
    let manifest: serde_json::Value = match serde_json::from_slice(&manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            v.problem(MANIFEST, format!("not JSON: {e}"));
            return v;
        }
    };
    if manifest["format"] != FORMAT {
        v.problem(MANIFEST, format!("format is not {FORMAT}"));
    }
    v.alert_id = manifest["alert_id"].as_i64().unwrap_or_default();
    let mut listed = BTreeSet::new();
    for m in manifest["members"].as_array().into_iter().flatten() {
        let (Some(name), Some(sha)) = (m["name"].as_str(), m["sha256"].as_str()) else {
            v.problem(MANIFEST, "a member without name or sha256");
            continue;
        };
        listed.insert(name.to_string());
        match files.get(name) {
            None => v.problem(name, "listed in the manifest but missing from the archive"),
            Some(bytes) if hex::encode(Sha256::digest(bytes)) != sha => v.problem(
                name,
                "its SHA-256 differs from the manifest: the member was changed",
            ),
            Some(_) => {}
        }
    }
    for name in files.keys() {
        if name != MANIFEST && name != SIGNATURE && !listed.contains(name) {
            v.problem(name, "in the archive but not in the manifest");
        }
    }
    v.checked.push(format!(
        "{} members match the signed manifest",
        listed.len()
    ));
    check_entries(&mut v, &files, "accesses.json");
    check_custody(&mut v, &files);
    match identities {
        Some(ids) => check_readings(&mut v, &files, ids),
        None => v.unchecked.push(
            "readings against the ciphertexts: no --identity given (the server's age identities)"
                .into(),
        ),
    }
    v
}

fn check_signature(
    v: &mut Verification,
    files: &BTreeMap<String, Vec<u8>>,
    manifest: &[u8],
    pinned_key: Option<&str>,
) {
    let Some(sig) = files.get(SIGNATURE) else {
        v.problem(SIGNATURE, "missing");
        return;
    };
    let Ok(sig) = serde_json::from_slice::<serde_json::Value>(sig) else {
        v.problem(SIGNATURE, "not JSON");
        return;
    };
    let (key, signature) = (
        sig["public_key"].as_str().unwrap_or_default(),
        sig["signature"].as_str().unwrap_or_default(),
    );
    v.public_key = key.to_string();
    if !checkpoint::signature_valid(key, manifest, signature) {
        // Either may have changed; the signature alone cannot tell which.
        v.problem(
            &format!("{MANIFEST} / {SIGNATURE}"),
            "the server's signature does not verify: the manifest or the signature was changed",
        );
    } else {
        v.checked
            .push(format!("manifest signed by Ed25519 key {key}"));
    }
    if let Some(pinned) = pinned_key {
        if !pinned.eq_ignore_ascii_case(key) {
            v.problem(
                SIGNATURE,
                format!("signed by {key}, not by the expected key {pinned}"),
            );
        }
    }
}

/// Every audit entry in a JSON member recomputes to its hash.
fn check_entries(v: &mut Verification, files: &BTreeMap<String, Vec<u8>>, member: &str) {
    let Some(bytes) = files.get(member) else {
        v.problem(member, "missing");
        return;
    };
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_slice(bytes) else {
        v.problem(member, "not a JSON array of audit entries");
        return;
    };
    for e in &entries {
        check_entry(v, member, e);
    }
    v.checked.push(format!(
        "{member}: {} audit entries hash as recorded",
        entries.len()
    ));
}

fn check_entry(v: &mut Verification, member: &str, e: &serde_json::Value) -> Option<audit::Entry> {
    let Some(entry) = audit::Entry::from_json(e) else {
        v.problem(member, "an audit entry with missing fields");
        return None;
    };
    if entry.recomputed_hash().is_some_and(|h| h != entry.hash) {
        v.problem(
            member,
            format!("audit entry #{} does not match its hash", entry.seq),
        );
        return None;
    }
    Some(entry)
}

fn check_custody(v: &mut Verification, files: &BTreeMap<String, Vec<u8>>) {
    const MEMBER: &str = "custody.json";
    let Some(custody) = files
        .get(MEMBER)
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
    else {
        v.problem(MEMBER, "missing or not JSON");
        return;
    };
    let mut steps = 0;
    for b in custody["bundles"].as_array().into_iter().flatten() {
        let (id, sha) = (
            b["bundle_id"].as_str().unwrap_or_default(),
            b["sha256"].as_str().unwrap_or_default(),
        );
        if let Some(bytes) = files.get(&evidence_member(id)) {
            if hex::encode(Sha256::digest(bytes)) != sha {
                v.problem(
                    &evidence_member(id),
                    "its SHA-256 differs from the one registered on receipt",
                );
            }
        }
        for step in ["stored", "decoded"] {
            let s = &b[step];
            if s["recorded"] != true {
                v.unchecked.push(format!(
                    "bundle {id}: {step} has no audit entry ({})",
                    s["note"]
                ));
                continue;
            }
            let Some(entry) = check_entry(v, MEMBER, &s["entry"]) else {
                continue;
            };
            let batch: Vec<(String, String)> = s["batch"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str()?.split_once(' '))
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            if !batch.iter().any(|(i, s)| i == id && s == sha) {
                v.problem(
                    MEMBER,
                    format!("bundle {id} is not in the batch of its {step} entry"),
                );
                continue;
            }
            let detail: serde_json::Value = serde_json::from_str(&entry.detail).unwrap_or_default();
            let complete = detail["bundles"].as_u64() == Some(batch.len() as u64);
            if !complete {
                v.unchecked.push(format!(
                    "bundle {id}: the batch of its {step} entry #{} lost members to erasure; \
                     its digest cannot be recomputed",
                    entry.seq
                ));
            } else if detail["list_sha256"].as_str() != Some(&audit::custody::list_digest(&batch)) {
                v.problem(
                    MEMBER,
                    format!(
                        "the batch of entry #{} does not hash to its digest",
                        entry.seq
                    ),
                );
            } else {
                steps += 1;
            }
        }
    }
    for e in custody["evaluated"]["seals"]
        .as_array()
        .into_iter()
        .flatten()
    {
        check_entry(v, MEMBER, e);
    }
    v.checked.push(format!(
        "{MEMBER}: {steps} custody steps commit to their bundle"
    ));
}

/// The readings of one CSV, by bundle: timestamp → the fields before `bundle_id`.
type CsvRows = HashMap<String, BTreeMap<i64, String>>;

fn parse_csv(signal: Signal, text: &str) -> std::result::Result<CsvRows, String> {
    let mut lines = text.lines();
    if lines.next() != Some(csv_header(signal).as_str()) {
        return Err("the header is not the signal's".into());
    }
    let mut out: CsvRows = HashMap::new();
    for line in lines {
        let (fields, bundle) = line.rsplit_once(',').ok_or("a row without bundle_id")?;
        let ts: i64 = fields
            .split(',')
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or("a row without ts_ms")?;
        out.entry(bundle.to_string())
            .or_default()
            .insert(ts, fields.to_string());
    }
    Ok(out)
}

fn check_readings(
    v: &mut Verification,
    files: &BTreeMap<String, Vec<u8>>,
    identities: &[age::x25519::Identity],
) {
    let alert: serde_json::Value = files
        .get("alert.json")
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default();
    let (from_ms, to_ms) = (
        alert["window"]["from_ms"].as_i64().unwrap_or(i64::MIN),
        alert["window"]["to_ms"].as_i64().unwrap_or(i64::MAX),
    );
    let station_keys: HashMap<String, String> = files
        .get("station.json")
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .map(|s| {
            s["stations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|st| {
                    Some((
                        st["name"].as_str()?.to_string(),
                        st["signing_public_key"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let signatures: HashMap<String, Vec<String>> = files
        .get(SIGNATURES_CSV)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<String> = l.split(',').map(String::from).collect();
            (f.len() == 5).then(|| (f[0].clone(), f))
        })
        .collect();
    let mut csvs: BTreeMap<Signal, CsvRows> = BTreeMap::new();
    for signal in SIGNALS {
        let member = readings_member(signal);
        if let Some(bytes) = files.get(&member) {
            match parse_csv(signal, &String::from_utf8_lossy(bytes)) {
                Ok(rows) => {
                    csvs.insert(signal, rows);
                }
                Err(e) => v.problem(&member, e),
            }
        }
    }
    let mut covered: BTreeMap<Signal, usize> = BTreeMap::new();
    for (name, ciphertext) in files {
        let Some(id) = name
            .strip_prefix("evidence/")
            .and_then(|n| n.strip_suffix(".age"))
        else {
            continue;
        };
        let plaintext = match decrypt(ciphertext, identities) {
            Ok(p) => p,
            Err(e) => {
                v.problem(
                    name,
                    format!("does not decrypt with the given identity: {e}"),
                );
                continue;
            }
        };
        let signed = match nachtwacht_wire::signed::decode_signed(&plaintext) {
            Ok(s) => s,
            Err(e) => {
                v.problem(name, format!("signed envelope: {e}"));
                continue;
            }
        };
        let listed = signatures.get(id);
        let key = station_keys.get(signed.station);
        let sig_ok = key.is_some_and(|k| {
            hex::decode(k).is_ok_and(|k| {
                ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, k)
                    .verify(&signed.digest(), &signed.signature)
                    .is_ok()
            })
        });
        if !sig_ok {
            v.problem(
                name,
                format!(
                    "station {:?}'s signature does not verify with its key in station.json",
                    signed.station
                ),
            );
        }
        if listed.is_none_or(|f| f[2] != signed.station || f[4] != hex::encode(signed.signature)) {
            v.problem(SIGNATURES_CSV, format!("bundle {id}: the station or signature listed is not the one inside the ciphertext"));
        }
        let bundle = match nachtwacht_wire::bundle::decode_bundle(signed.bundle) {
            Ok(b) => b,
            Err(e) => {
                v.problem(name, format!("does not decode: {e}"));
                continue;
            }
        };
        if bundle.manifest.bundle_id.to_hex() != id {
            v.problem(name, "the bundle inside has another id");
            continue;
        }
        for sb in &bundle.batches {
            let Some(csv) = csvs.get(&sb.signal) else {
                continue;
            };
            let member = readings_member(sb.signal);
            let in_csv = csv.get(id);
            let mut matched = 0;
            for i in 0..sb.batch.num_rows() {
                let (ts, fields) = match wire_fields(sb.signal, &sb.batch, i) {
                    Ok(f) => f,
                    Err(e) => {
                        v.problem(name, e.to_string());
                        break;
                    }
                };
                if ts < from_ms || ts > to_ms {
                    continue;
                }
                let line = fields.join(",");
                match in_csv.and_then(|rows| rows.get(&ts)) {
                    Some(row) if *row == line => matched += 1,
                    Some(_) => v.problem(
                        &member,
                        format!("the reading at {ts} differs from bundle {id}"),
                    ),
                    // A reading stored twice is listed once, under the first bundle that carried it.
                    None if csv.values().any(|rows| rows.get(&ts) == Some(&line)) => {}
                    None => v.problem(&member, format!("bundle {id}'s reading at {ts} is missing")),
                }
            }
            let rows = in_csv.map_or(0, |r| r.len());
            if matched != rows {
                v.problem(
                    &member,
                    format!(
                        "{} rows attributed to bundle {id} are not in it",
                        rows - matched.min(rows)
                    ),
                );
            }
            *covered.entry(sb.signal).or_default() += matched;
        }
    }
    for (signal, rows) in &csvs {
        let total: usize = rows.values().map(|r| r.len()).sum();
        let proven = covered.get(signal).copied().unwrap_or(0);
        if proven == total {
            v.checked.push(format!(
                "{}: all {total} readings decrypt and decode from the enclosed ciphertexts",
                readings_member(*signal)
            ));
        } else {
            v.unchecked.push(format!(
                "{}: {} of {total} readings have no enclosed ciphertext (evidence pruned)",
                readings_member(*signal),
                total - proven
            ));
        }
    }
}
