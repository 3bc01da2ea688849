//! The tamper-evident audit log: an append-only, hash-chained table.
//!
//! Each entry's hash is SHA-256 over the previous entry's hash and this entry's fields, so changing,
//! deleting or reordering any entry breaks every hash after it. [`verify`] recomputes the chain from
//! the first entry and names the first entry that does not fit.
//!
//! Entries written since the data lifecycle (issue 21) are *erasable*: the hash covers a salted
//! digest of the object and of the detail, not the text, so [`erase`] can replace both with a
//! marker (keeping the digests, dropping the salt) when the data they name must go, and the chain
//! still verifies. Who acted, what action and when stay readable for ever.
//!
//! Written for every release of research numbers, every enrollment and every key or configuration
//! change the server makes; never updated or deleted. Alerts and their workflow steps are brought
//! under the chain by seals ([`seal`]); the head is anchored outside the database by signed daily
//! checkpoints ([`checkpoint`]).

pub mod checkpoint;
pub mod custody;
pub mod erase;
pub mod file_change;
pub mod seal;

use std::collections::HashMap;

use crate::base::db::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("audit signing key: {0}")]
    Key(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
    /// How the entry's hash commits to its object and detail (see [`Commitment`]).
    pub commitment: Commitment,
}

/// How an entry's hash covers its object and detail.
#[derive(Debug, Clone, PartialEq)]
pub enum Commitment {
    /// Entries from before erasable entries existed: the hash covers the text itself.
    Plain,
    /// The hash covers `SHA-256(salt, text)` of each; the salt is kept with the entry.
    Salted { salt: String },
    /// Object and detail were erased (by the tombstone entry `by`): their digests are kept, the
    /// salt and the text are gone. Plain entries erased keep no digests (`None`).
    Erased {
        by: i64,
        digests: Option<(String, String)>,
    },
}

/// The digest an erasable entry's hash covers in place of a field's text. The salt (random per
/// entry) keeps a short value (a device serial) from being found by trying candidates once the
/// salt is gone.
pub fn field_digest(salt: &str, field: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"nachtwacht audit field\0");
    h.update((salt.len() as u64).to_le_bytes());
    h.update(salt.as_bytes());
    h.update((field.len() as u64).to_le_bytes());
    h.update(field.as_bytes());
    hex::encode(h.finalize())
}

/// The entry's hash. `object` and `detail` are the text for a plain entry and the field digests
/// for an erasable one (`salted`), which also marks the hash so neither form can pass for the other.
#[allow(clippy::too_many_arguments)]
fn entry_hash(
    salted: bool,
    prev: &str,
    seq: i64,
    at_ms: i64,
    actor: &str,
    action: &str,
    object: &str,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    if salted {
        h.update(b"nachtwacht audit v2\0");
    }
    h.update(prev.as_bytes());
    for field in [
        &seq.to_string(),
        &at_ms.to_string(),
        actor,
        action,
        object,
        detail,
    ] {
        // Length-prefix every field so no two different entries hash the same bytes.
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The hash of an erasable entry whose text is still there, after `prev`.
fn salted_hash(prev: &str, e: &Entry, salt: &str) -> String {
    entry_hash(
        true,
        prev,
        e.seq,
        e.at_ms,
        &e.actor,
        &e.action,
        &field_digest(salt, &e.object),
        &field_digest(salt, &e.detail),
    )
}

/// The most characters an actor, action or object keeps in the log; longer values (a 500,000
/// character user name typed at the login form) are cut with a note of their length.
pub const MAX_FIELD_CHARS: usize = 256;
/// The most bytes an entry's detail keeps; a longer detail is replaced by a JSON object with its
/// length and its first [`MAX_FIELD_CHARS`] characters.
pub const MAX_DETAIL_BYTES: usize = 8 * 1024;

/// `value` cut to [`MAX_FIELD_CHARS`] characters, with the number of characters cut.
pub fn bounded(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(MAX_FIELD_CHARS) {
        None => value.into(),
        Some((cut, _)) => format!(
            "{}…[+{} chars]",
            &value[..cut],
            value[cut..].chars().count()
        )
        .into(),
    }
}

/// A detail of at most [`MAX_DETAIL_BYTES`], still JSON.
fn bounded_detail(detail: &str) -> std::borrow::Cow<'_, str> {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail.into();
    }
    serde_json::json!({ "truncated_from_bytes": detail.len(), "head": bounded(detail) })
        .to_string()
        .into()
}

/// Appends an entry. Call inside the same transaction as the change it records when there is one.
/// Every field is bounded ([`MAX_FIELD_CHARS`], [`MAX_DETAIL_BYTES`]), whatever a caller passes:
/// a refusal of hostile input must not let that input fill the log.
pub fn append(
    conn: &Connection,
    at_ms: i64,
    actor: &str,
    action: &str,
    object: &str,
    detail: &str,
) -> Result<i64> {
    let (actor, action, object, detail) = (
        bounded(actor),
        bounded(action),
        bounded(object),
        bounded_detail(detail),
    );
    let (actor, action, object, detail) = (&*actor, &*action, &*object, &*detail);
    // Reading the head and appending after it is one transaction (the caller's, or its own):
    // another process appending in between would fork the chain.
    conn.atomically(|conn| append_after_head(conn, at_ms, actor, action, object, detail))
}

fn append_after_head(
    conn: &Connection,
    at_ms: i64,
    actor: &str,
    action: &str,
    object: &str,
    detail: &str,
) -> Result<i64> {
    let (seq, prev) = match head(conn)? {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_string()),
    };
    let salt = new_salt();
    let hash = entry_hash(
        true,
        &prev,
        seq,
        at_ms,
        actor,
        action,
        &field_digest(&salt, object),
        &field_digest(&salt, detail),
    );
    conn.execute(
        "INSERT INTO audit_log (seq, at_ms, actor, action, object, detail, prev_hash, hash, salt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        crate::params![seq, at_ms, actor, action, object, detail, prev, hash, salt],
    )?;
    Ok(seq)
}

fn new_salt() -> String {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .expect("the system's random source");
    hex::encode(salt)
}

pub fn entries(conn: &Connection) -> Result<Vec<Entry>> {
    entries_where(conn, "TRUE", [])
}

/// The chain's head: the last entry's number and hash (`None` for an empty log).
pub fn head(conn: &Connection) -> Result<Option<(i64, String)>> {
    Ok(conn
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// The entries about `object` (e.g. `alert:12`), oldest first.
pub fn entries_about(conn: &Connection, object: &str) -> Result<Vec<Entry>> {
    entries_where(conn, "object = ?1", [object])
}

/// The entry numbered `seq`, if the log still holds it.
pub fn entry(conn: &Connection, seq: i64) -> Result<Option<Entry>> {
    Ok(entries_where(conn, "seq = ?1", [seq])?.pop())
}

fn entries_where<P: crate::base::db::Params>(
    conn: &Connection,
    filter: &str,
    params: P,
) -> Result<Vec<Entry>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT seq, at_ms, actor, action, object, detail, prev_hash, hash, salt, erased_by,
                object_digest, detail_digest
           FROM audit_log WHERE {filter} ORDER BY seq"
    ))?;
    let rows = stmt.query_map(params, |r| {
        let salt: Option<String> = r.get(8)?;
        let erased_by: Option<i64> = r.get(9)?;
        let digests: (Option<String>, Option<String>) = (r.get(10)?, r.get(11)?);
        let commitment = match (erased_by, salt) {
            (Some(by), _) => Commitment::Erased {
                by,
                digests: match digests {
                    (Some(o), Some(d)) => Some((o, d)),
                    _ => None,
                },
            },
            (None, Some(salt)) => Commitment::Salted { salt },
            (None, None) => Commitment::Plain,
        };
        Ok(Entry {
            seq: r.get(0)?,
            at_ms: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            object: r.get(4)?,
            detail: r.get(5)?,
            prev_hash: r.get(6)?,
            hash: r.get(7)?,
            commitment,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Entry {
    /// What the hash commits to besides the text: (salt, object digest, detail digest, erased by),
    /// each empty when it does not apply. Enough to recompute the chain from an export alone.
    fn commitment_fields(&self) -> (String, String, String, Option<i64>) {
        match &self.commitment {
            Commitment::Plain => Default::default(),
            Commitment::Salted { salt } => (salt.clone(), String::new(), String::new(), None),
            Commitment::Erased { by, digests } => {
                let (o, d) = digests.clone().unwrap_or_default();
                (String::new(), o, d, Some(*by))
            }
        }
    }
}

impl Entry {
    /// Whether the entry is about person `person_id`: its object is the person or one of
    /// `alert_ids` (their alerts), or its detail names the person (`person`, `persons`).
    pub fn is_about_person(&self, person_id: i64, alert_ids: &[i64]) -> bool {
        if self.object == format!("person:{person_id}")
            || self
                .object
                .strip_prefix("alert:")
                .and_then(|a| a.parse::<i64>().ok())
                .is_some_and(|a| alert_ids.contains(&a))
        {
            return true;
        }
        let Ok(detail) = serde_json::from_str::<serde_json::Value>(&self.detail) else {
            return false;
        };
        detail["person"].as_i64() == Some(person_id)
            || detail["persons"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p.as_i64() == Some(person_id)))
    }

    /// The hash this entry's own fields and its `prev_hash` give, or `None` when its text was
    /// erased from a plain entry (nothing left to hash). Checks one entry on its own, e.g. one
    /// quoted in a court dossier; [`verify`] checks the links between them.
    pub fn recomputed_hash(&self) -> Option<String> {
        let prev = &self.prev_hash;
        match &self.commitment {
            Commitment::Plain => Some(entry_hash(
                false,
                prev,
                self.seq,
                self.at_ms,
                &self.actor,
                &self.action,
                &self.object,
                &self.detail,
            )),
            Commitment::Salted { salt } => Some(salted_hash(prev, self, salt)),
            Commitment::Erased {
                digests: Some((object, detail)),
                ..
            } => Some(entry_hash(
                true,
                prev,
                self.seq,
                self.at_ms,
                &self.actor,
                &self.action,
                object,
                detail,
            )),
            Commitment::Erased { digests: None, .. } => None,
        }
    }

    /// An entry as [`to_json`] writes it.
    pub fn from_json(v: &serde_json::Value) -> Option<Entry> {
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
        let salt = text("salt").unwrap_or_default();
        let commitment = match v.get("erased_by").and_then(|x| x.as_i64()) {
            Some(by) => {
                let (o, d) = (text("object_digest")?, text("detail_digest")?);
                Commitment::Erased {
                    by,
                    digests: (!o.is_empty()).then_some((o, d)),
                }
            }
            None if salt.is_empty() => Commitment::Plain,
            None => Commitment::Salted { salt },
        };
        Some(Entry {
            seq: v.get("seq")?.as_i64()?,
            at_ms: v.get("at_ms")?.as_i64()?,
            actor: text("actor")?,
            action: text("action")?,
            object: text("object")?,
            detail: text("detail")?,
            prev_hash: text("prev_hash")?,
            hash: text("hash")?,
            commitment,
        })
    }
}

/// Entries as CSV with a header row; fields with commas, quotes or line breaks are quoted.
pub fn to_csv(entries: &[Entry]) -> String {
    let field = csv_field;
    let mut out = String::from(
        "seq,at_ms,actor,action,object,detail,prev_hash,hash,salt,object_digest,detail_digest,erased_by\n",
    );
    for e in entries {
        let (salt, object_digest, detail_digest, erased_by) = e.commitment_fields();
        out += &[
            e.seq.to_string(),
            e.at_ms.to_string(),
            field(&e.actor),
            field(&e.action),
            field(&e.object),
            field(&e.detail),
            e.prev_hash.clone(),
            e.hash.clone(),
            salt,
            object_digest,
            detail_digest,
            erased_by.map(|b| b.to_string()).unwrap_or_default(),
        ]
        .join(",");
        out.push('\n');
    }
    out
}

/// Entries as a JSON array of objects with every field, hashes and commitments included.
pub fn to_json(entries: &[Entry]) -> String {
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let (salt, object_digest, detail_digest, erased_by) = e.commitment_fields();
            serde_json::json!({"seq": e.seq, "at_ms": e.at_ms, "actor": e.actor, "action": e.action,
                "object": e.object, "detail": e.detail, "prev_hash": e.prev_hash, "hash": e.hash,
                "salt": salt, "object_digest": object_digest, "detail_digest": detail_digest,
                "erased_by": erased_by})
        })
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_default()
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Intact { entries: usize },
    Broken { at_seq: i64, reason: String },
}

pub fn verify(conn: &Connection) -> Result<Verdict> {
    let all = entries(conn)?;
    // Entries before the retention horizon are gone; the chain starts from the last one's hash.
    let (mut prev, pruned_through) = erase::horizon(conn)?.unwrap_or((GENESIS.to_string(), 0));
    let by_seq: HashMap<i64, &Entry> = all.iter().map(|e| (e.seq, e)).collect();
    let mut erasable_seen = false;
    for (i, e) in all.iter().enumerate() {
        let expected_seq = pruned_through + i as i64 + 1;
        let broken = |reason: String| {
            Ok(Verdict::Broken {
                at_seq: e.seq,
                reason,
            })
        };
        if e.seq != expected_seq {
            return broken(format!("expected entry {expected_seq}, found {}", e.seq));
        }
        if e.prev_hash != prev {
            return broken("previous-hash link does not match".into());
        }
        let recomputed = match &e.commitment {
            Commitment::Plain if erasable_seen => {
                return broken("a plain entry after erasable ones: entries were rewritten".into())
            }
            Commitment::Plain => Some(entry_hash(
                false, &prev, e.seq, e.at_ms, &e.actor, &e.action, &e.object, &e.detail,
            )),
            Commitment::Salted { salt } => Some(salted_hash(&prev, e, salt)),
            Commitment::Erased { by, digests } => {
                if let Some(problem) = erase::tombstone_problem(e.seq, *by, &by_seq) {
                    return broken(problem);
                }
                match digests {
                    Some((object, detail)) => Some(entry_hash(
                        true, &prev, e.seq, e.at_ms, &e.actor, &e.action, object, detail,
                    )),
                    None if erasable_seen => {
                        return broken("an erased entry without digests after erasable ones".into())
                    }
                    // A plain entry erased: its text is gone, so only its link can be checked.
                    None => None,
                }
            }
        };
        erasable_seen |= !matches!(
            e.commitment,
            Commitment::Plain | Commitment::Erased { digests: None, .. }
        );
        if recomputed.is_some_and(|h| h != e.hash) {
            return broken("entry content does not match its hash".into());
        }
        prev = e.hash.clone();
    }
    if let Some(m) = seal::check(conn)? {
        return Ok(Verdict::Broken {
            at_seq: m.sealed_at_seq.unwrap_or(0),
            reason: match m.sealed_at_seq {
                Some(seq) => format!(
                    "alert {} no longer matches its seal in entry {seq}: the alert or its workflow steps were changed outside nachtwacht",
                    m.alert_id
                ),
                None => format!("alert {} was never sealed: it was written outside nachtwacht", m.alert_id),
            },
        });
    }
    Ok(Verdict::Intact { entries: all.len() })
}

/// [`verify`], then every signed checkpoint of the head ([`checkpoint::verify`]), then a head the
/// auditor recorded elsewhere (`anchor`: entry number and hash).
pub fn verify_all(
    dir: &crate::base::datadir::DataDir,
    conn: &Connection,
    anchor: Option<(i64, &str)>,
) -> Result<Verdict> {
    let verdict = verify(conn)?;
    if let Verdict::Broken { .. } = verdict {
        return Ok(verdict);
    }
    if let Some((at_seq, reason)) = checkpoint::verify(dir, conn)? {
        return Ok(Verdict::Broken { at_seq, reason });
    }
    if let Some((seq, hash)) = anchor {
        if let Some(problem) = checkpoint::anchor_problem(conn, seq, hash)? {
            return Ok(Verdict::Broken {
                at_seq: seq,
                reason: format!("the recorded head does not match: {problem}"),
            });
        }
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::db::Db;

    fn db_with_entries(n: i64) -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::base::db::testing::open(dir.path());
        for i in 0..n {
            append(
                &db.lock(),
                1000 + i,
                "admin",
                "station.add",
                &format!("station-{i}"),
                "{}",
            )
            .unwrap();
        }
        (dir, db)
    }

    /// An alert, written as nachtwacht writes one: the row and its seal in one transaction.
    fn sealed_alert(db: &Db) -> i64 {
        let mut conn = db.lock();
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO persons (id, reference, programme, created_at_ms) VALUES (1, 'C-1', 'alcohol-ban', 0)",
            [],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO alerts (person_id, kind, severity, start_ms, end_ms, peak_tac_g_dl, rule, evidence_bundles, created_at_ms)
             VALUES (1, 'alcohol', 'high', 0, 3600000, 0.081, '{}', 'b1', 5)",
            [],
        )
        .unwrap();
        let id = tx.last_insert_rowid();
        assert!(seal::reseal(&tx, id, 10, "system").unwrap());
        tx.execute(
            "INSERT INTO alert_events (alert_id, at_ms, actor, from_status, to_status, comment)
             VALUES (?1, 20, 'olga', 'new', 'acknowledged', 'called the client')",
            [id],
        )
        .unwrap();
        assert!(seal::reseal(&tx, id, 20, "olga").unwrap());
        // Nothing changed: no second seal.
        assert!(!seal::reseal(&tx, id, 30, "system").unwrap());
        tx.commit().unwrap();
        id
    }

    /// Editing an alert's peak TAC or a workflow comment in SQL is found by `verify`. Before, the
    /// chain covered neither and both edits verified.
    #[test]
    fn edits_to_alerts_and_their_workflow_outside_nachtwacht_are_detected() {
        let (_tmp, db) = db_with_entries(3);
        let id = sealed_alert(&db);
        assert!(matches!(
            verify(&db.lock()).unwrap(),
            Verdict::Intact { .. }
        ));
        for tamper in [
            "UPDATE alerts SET peak_tac_g_dl = 0.021",
            "UPDATE alert_events SET comment = 'nothing happened'",
            "UPDATE alerts SET status = 'closed'",
        ] {
            let conn = db.lock();
            conn.execute_batch("BEGIN").unwrap();
            conn.execute(tamper, []).unwrap();
            match verify(&conn).unwrap() {
                Verdict::Broken { reason, .. } => {
                    assert!(
                        reason.contains(&format!("alert {id}")),
                        "{tamper}: {reason}"
                    )
                }
                other => panic!("{tamper} went unnoticed: {other:?}"),
            }
            conn.execute_batch("ROLLBACK").unwrap();
        }
        assert!(matches!(
            verify(&db.lock()).unwrap(),
            Verdict::Intact { .. }
        ));
        // An alert inserted behind nachtwacht's back has no seal.
        db.lock()
            .execute(
                "INSERT INTO alerts (person_id, kind, severity, start_ms, end_ms, rule, evidence_bundles, created_at_ms)
                 VALUES (1, 'alcohol', 'high', 9, 10, '{}', '', 5)",
                [],
            )
            .unwrap();
        assert!(matches!(
            verify(&db.lock()).unwrap(),
            Verdict::Broken { .. }
        ));
    }

    /// Rewriting an entry and recomputing every later hash gives a chain that verifies on its
    /// own; the signed checkpoint of the head, and a head recorded elsewhere, catch it.
    #[test]
    fn a_rewritten_chain_is_caught_by_its_checkpoint_and_by_a_recorded_head() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::base::datadir::DataDir::new(tmp.path());
        std::fs::create_dir_all(dir.keys()).unwrap();
        let db = crate::base::db::testing::open(tmp.path());
        for i in 0..5 {
            append(
                &db.lock(),
                1000 + i,
                "admin",
                "station.add",
                &format!("s-{i}"),
                "{}",
            )
            .unwrap();
        }
        let c = checkpoint::write(&dir, &db.lock(), 2000).unwrap().unwrap();
        assert_eq!(c.seq, 5);
        assert!(matches!(
            verify_all(&dir, &db.lock(), Some((c.seq, &c.hash))).unwrap(),
            Verdict::Intact { entries: 5 }
        ));
        // The attacker changes entry 2 and recomputes the chain from there.
        {
            let conn = db.lock();
            conn.execute("UPDATE audit_log SET object = 's-X' WHERE seq = 2", [])
                .unwrap();
            let all = entries(&conn).unwrap();
            let mut prev = all[0].hash.clone();
            for e in &all[1..] {
                let Commitment::Salted { salt } = &e.commitment else {
                    panic!("entries are written erasable");
                };
                let h = salted_hash(&prev, e, salt);
                conn.execute(
                    "UPDATE audit_log SET prev_hash = ?2, hash = ?3 WHERE seq = ?1",
                    crate::params![e.seq, prev, h],
                )
                .unwrap();
                prev = h;
            }
        }
        assert!(
            matches!(verify(&db.lock()).unwrap(), Verdict::Intact { .. }),
            "the rewritten chain verifies on its own"
        );
        let broken = |v: Verdict| match v {
            Verdict::Broken { reason, .. } => reason,
            other => panic!("rewrite not detected: {other:?}"),
        };
        let reason = broken(verify_all(&dir, &db.lock(), None).unwrap());
        assert!(reason.contains("rewritten"), "{reason}");
        // Without the checkpoint file, the head recorded elsewhere still catches it.
        std::fs::remove_dir_all(dir.audit_checkpoints()).unwrap();
        let reason = broken(verify_all(&dir, &db.lock(), Some((c.seq, &c.hash))).unwrap());
        assert!(reason.contains("recorded head"), "{reason}");
        // A checkpoint re-signed by another key is refused.
        checkpoint::write(&dir, &db.lock(), 3000).unwrap();
        std::fs::remove_file(dir.audit_signing_key()).unwrap();
        let reason = broken(verify_all(&dir, &db.lock(), None).unwrap());
        assert!(reason.contains("not signed"), "{reason}");
    }

    #[test]
    fn every_field_is_bounded() {
        let (_tmp, db) = db_with_entries(0);
        let conn = db.lock();
        let huge = "x".repeat(500_008);
        append(
            &conn,
            1,
            &huge,
            "login.failure",
            &huge,
            &format!("{{\"u\":\"{huge}\"}}"),
        )
        .unwrap();
        let e = entries(&conn).unwrap().pop().unwrap();
        assert!(
            e.actor.chars().count() < MAX_FIELD_CHARS + 32,
            "{}",
            e.actor.len()
        );
        assert!(e.object.chars().count() < MAX_FIELD_CHARS + 32);
        assert!(e.detail.len() <= MAX_DETAIL_BYTES);
        let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
        assert_eq!(detail["truncated_from_bytes"], 500_016);
        assert!(e.actor.ends_with("…[+499752 chars]"), "{}", &e.actor[250..]);
        drop(conn);
        assert_eq!(verify(&db.lock()).unwrap(), Verdict::Intact { entries: 1 });
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (_d, db) = db_with_entries(5);
        assert_eq!(verify(&db.lock()).unwrap(), Verdict::Intact { entries: 5 });
    }

    #[test]
    fn changed_deleted_and_reordered_entries_are_detected() {
        let (_d, db) = db_with_entries(5);
        db.lock()
            .execute(
                "UPDATE audit_log SET object = 'station-x' WHERE seq = 3",
                [],
            )
            .unwrap();
        assert!(matches!(
            verify(&db.lock()).unwrap(),
            Verdict::Broken { at_seq: 3, .. }
        ));

        let (_d, db) = db_with_entries(5);
        db.lock()
            .execute("DELETE FROM audit_log WHERE seq = 2", [])
            .unwrap();
        assert!(matches!(
            verify(&db.lock()).unwrap(),
            Verdict::Broken { at_seq: 3, .. }
        ));

        let (_d, db) = db_with_entries(5);
        let conn = db.lock();
        conn.execute("UPDATE audit_log SET seq = 100 WHERE seq = 2", [])
            .unwrap();
        conn.execute("UPDATE audit_log SET seq = 2 WHERE seq = 3", [])
            .unwrap();
        conn.execute("UPDATE audit_log SET seq = 3 WHERE seq = 100", [])
            .unwrap();
        assert!(matches!(
            verify(&conn).unwrap(),
            Verdict::Broken { at_seq: 2, .. }
        ));
    }
}
