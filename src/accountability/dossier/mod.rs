//! The court evidence dossier of one alert: one signed archive that a probation officer can hand
//! to a court and that anyone can check offline with `nachtwacht dossier verify`.
//!
//! Members (a plain tar file, in this order; `docs/accountability.md` describes each):
//! - `README.txt`: what each member is and how to check it (Dutch and English);
//! - `report.html`: the printable page (units, threshold, the rule that fired, the chart, the
//!   custody summary, the workflow); `chart.svg`: the chart alone;
//! - `alert.json`: the alert, its revisions, the rule values it was judged by, the window;
//! - `readings/<signal>.csv`: the person's readings of the ankle monitor's signals in the window,
//!   each with the bundle that carried it;
//! - `rules.json`: the rule files in force when the alert was last evaluated (values and version);
//! - `evidence/<bundle>.age`: the original ciphertexts; `evidence/signatures.csv`: their SHA-256,
//!   the signing station, its Ed25519 public key and the signature found inside;
//! - `station.json`: the stations and devices involved, with pairing and assignment history;
//! - `custody.json`: per bundle received → stored → decoded, and the alert's seals (evaluated),
//!   each with its audit entry (fields, salt and hash) and the batch the entry commits to;
//! - `workflow.csv`: every workflow step; `accesses.json`: every audit entry about the alert;
//! - `MANIFEST.json`: every member above with its SHA-256 and size;
//! - `SIGNATURE.json`: the server's Ed25519 signature of `MANIFEST.json` (the key that signs the
//!   audit checkpoints).

mod build;
mod verify;

pub use build::{build, Dossier};
pub use verify::{verify, Problem, Verification};

use arrow::array::{Array, RecordBatch, TimestampMillisecondArray};
use nachtwacht_wire::Signal;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Casework(#[from] crate::alerts::casework::Error),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Storage(#[from] crate::base::blobs::Error),
    #[error(transparent)]
    Audit(#[from] crate::trust::audit::Error),
    #[error(transparent)]
    Dataset(#[from] crate::dataset::Error),
    #[error(transparent)]
    Secrets(#[from] crate::trust::secrets::Error),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building the archive: {0}")]
    Archive(std::io::Error),
    #[error("formatting readings: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The dossier format, named in `MANIFEST.json`.
pub const FORMAT: &str = "nachtwacht-dossier/1";
pub const MANIFEST: &str = "MANIFEST.json";
pub const SIGNATURE: &str = "SIGNATURE.json";
pub const SIGNATURES_CSV: &str = "evidence/signatures.csv";

/// The signals whose readings a dossier holds: the ankle monitor's (TAC and strap, battery,
/// device events). Wristband signals are not alert evidence.
pub const SIGNALS: [Signal; 3] = [Signal::Ankle, Signal::Battery, Signal::Event];

/// The largest dossier `verify` reads (ciphertexts of a day or two and their readings).
pub const MAX_DOSSIER_BYTES: u64 = 2 << 30;

fn readings_member(signal: Signal) -> String {
    format!("readings/{}.csv", signal.name())
}

fn evidence_member(bundle_id: &str) -> String {
    format!("evidence/{bundle_id}.age")
}

/// The CSV header of a signal's readings: `ts_ms`, `ts_utc`, the wire columns after the
/// timestamp, `bundle_id`.
fn csv_header(signal: Signal) -> String {
    let schema = signal.schema();
    let mut cols = vec!["ts_ms".to_string(), "ts_utc".to_string()];
    cols.extend(schema.fields().iter().skip(1).map(|f| f.name().clone()));
    cols.push("bundle_id".into());
    cols.join(",")
}

/// Row `i` of `batch` (the signal's wire columns, the timestamp first) as the CSV fields before
/// `bundle_id`: the one formatting the builder writes and the verifier compares, so a reading
/// decoded from a ciphertext and the same reading in the CSV are the same text.
fn wire_fields(signal: Signal, batch: &RecordBatch, i: usize) -> Result<(i64, Vec<String>)> {
    let schema = signal.schema();
    let ts = batch
        .column_by_name(schema.field(0).name())
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .ok_or_else(|| {
            arrow::error::ArrowError::SchemaError(format!("{}: no timestamp column", signal.name()))
        })?;
    let ts_ms = ts.value(i);
    let mut fields = vec![
        ts_ms.to_string(),
        chrono::DateTime::from_timestamp_millis(ts_ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default(),
    ];
    let options = arrow::util::display::FormatOptions::default().with_null("");
    for field in schema.fields().iter().skip(1) {
        let column = batch.column_by_name(field.name()).ok_or_else(|| {
            arrow::error::ArrowError::SchemaError(format!(
                "{}: no column {}",
                signal.name(),
                field.name()
            ))
        })?;
        let text = if column.is_null(i) {
            String::new()
        } else {
            arrow::util::display::ArrayFormatter::try_new(column.as_ref(), &options)?
                .value(i)
                .to_string()
        };
        fields.push(crate::trust::audit::csv_field(&text));
    }
    Ok((ts_ms, fields))
}
