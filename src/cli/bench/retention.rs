//! `nachtwacht bench retention`: the time to erase one person from a data directory the size the
//! issue names (1,000 persons × 30 days of ankle data, 50 persons × 7 days of wristband data at
//! the E4's rates), beside a plain rewrite of the same files measured in the same run.
//!
//! The data directory is real (`init`, enrolled persons, one station, bundle rows, a research
//! table); the readings are synthetic and written as compaction leaves them: one file per signal
//! and day holding everyone, sorted by person. An ankle person's erasure touches every ankle file,
//! a wristband person's every wristband file: what dominates is rewriting them, which is what the
//! baseline does without removing anything (read every batch, write it to a new file, fsync,
//! rename). The erasure is the whole retention run for that person: raw readings, research rows,
//! identity, tombstones. Method and figures in docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, TimestampMillisecondArray};
use nachtwacht::base::time::DAY_MS;
use nachtwacht::base::Context;
use nachtwacht::dataset::{self, RowOrder, WrittenFile};
use nachtwacht::lifecycle::{policy, retention};
use nachtwacht::trust::pseudonym::Pseudonymiser;
use nachtwacht_wire::{BundleId, Signal};
use polars::prelude::*;

use super::measure::timed;

#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    #[arg(long, default_value_t = 1_000)]
    pub ankle_people: usize,
    #[arg(long, default_value_t = 30)]
    pub ankle_days: usize,
    #[arg(long, default_value_t = 50)]
    pub wristband_people: usize,
    #[arg(long, default_value_t = 7)]
    pub wristband_days: usize,
    /// Hours a day the wristband records (EDA 4 Hz, BVP 64 Hz, HR 1 Hz, temperature 4 Hz, ACC
    /// 32 Hz: about 378,000 rows an hour). Whole days (24) of 50 persons × 7 days are 3.2 billion
    /// rows, about 31 GB: more than a development machine's disk, so the default is 2.
    #[arg(long, default_value_t = 2)]
    pub wristband_hours: usize,
    /// Build the data directory here (it must not exist) instead of in a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The wristband's signals and their rates (Hz).
const WRISTBAND: [(Signal, f64); 5] = [
    (Signal::Eda, 4.0),
    (Signal::Bvp, 64.0),
    (Signal::Hr, 1.0),
    (Signal::Temp, 4.0),
    (Signal::Acc, 32.0),
];
/// An ankle reading every 30 minutes.
const ANKLE_HZ: f64 = 1.0 / 1800.0;
/// Rows per generated batch: memory stays bounded whatever the file's size.
const BATCH_ROWS: usize = 1 << 20;

/// One person's rows of one signal, from `start_ms`, in batches of at most [`BATCH_ROWS`].
fn person_batches<'a>(
    signal: Signal,
    rate_hz: f64,
    start_ms: i64,
    rows: usize,
    pid: &'a str,
    bundle: &BundleId,
) -> impl Iterator<Item = dataset::Result<RecordBatch>> + 'a {
    let step_ms = 1000.0 / rate_hz;
    let bundle = *bundle;
    (0..rows).step_by(BATCH_ROWS).map(move |first| {
        let n = BATCH_ROWS.min(rows - first);
        let ts: Vec<i64> = (first..first + n)
            .map(|i| start_ms + (i as f64 * step_ms) as i64)
            .collect();
        let mut columns: Vec<ArrayRef> = vec![Arc::new(
            TimestampMillisecondArray::from(ts).with_timezone("UTC"),
        )];
        for (k, (_, dt)) in signal.value_columns().iter().enumerate() {
            columns.push(match dt {
                arrow::datatypes::DataType::Boolean => Arc::new(BooleanArray::from(vec![true; n])),
                _ => Arc::new(Float64Array::from_iter_values(
                    (first..first + n).map(|i| 1.0 + k as f64 + (i as f64 * 0.01).sin()),
                )),
            });
        }
        let wire = RecordBatch::try_new(signal.schema(), columns)?;
        let quality = arrow::array::UInt16Array::from(vec![0u16; n]);
        dataset::stored_rows(signal, &bundle, pid, &wire, &quality)
    })
}

/// A bundle id for a person's device-day of one signal.
fn bundle_of(person: i64, day: usize, signal: Signal) -> BundleId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&person.to_le_bytes());
    id[8..12].copy_from_slice(&(day as u32).to_le_bytes());
    id[12] = signal as u8;
    id[15] = 0xbe;
    BundleId(id)
}

/// What one group of persons (ankle or wristband) became on disk.
#[derive(Default)]
struct Written {
    files: usize,
    rows: usize,
    bytes: usize,
}

/// Writes `days` of `signals` for `persons` (id, pid) as compacted files, catalogued, with a
/// bundle row per person, day and signal.
fn write_group(
    ctx: &Context,
    persons: &[(i64, String)],
    days: usize,
    signals: &[(Signal, f64)],
    seconds_a_day: usize,
    day0: i64,
) -> anyhow::Result<Written> {
    let mut out = Written::default();
    let mut sorted: Vec<&(i64, String)> = persons.iter().collect();
    sorted.sort_by(|a, b| a.1.cmp(&b.1));
    let now = nachtwacht::base::time::now_ms();
    for day in 0..days {
        let start = day0 + day as i64 * DAY_MS;
        let day_name = chrono::DateTime::from_timestamp_millis(start)
            .context("day")?
            .format("%Y-%m-%d")
            .to_string();
        for &(signal, hz) in signals {
            let rows_each = ((seconds_a_day as f64) * hz).round() as usize;
            let bundles: Vec<String> = sorted
                .iter()
                .map(|(id, _)| bundle_of(*id, day, signal).to_hex())
                .collect();
            let rel = Path::new("datasets/raw")
                .join(signal.name())
                .join(&day_name)
                .join(format!("compacted-bench-{}.parquet", bundles.len()));
            let ids: Vec<BundleId> = sorted
                .iter()
                .map(|(id, _)| bundle_of(*id, day, signal))
                .collect();
            let batches = sorted
                .iter()
                .zip(ids.iter())
                .flat_map(|((_, pid), bundle)| {
                    person_batches(signal, hz, start, rows_each, pid, bundle)
                });
            let bytes = dataset::write_parquet_stream(
                &ctx.dir.root().join(&rel),
                &dataset::stored_schema(signal),
                RowOrder::ByPerson,
                batches,
            )?;
            let file = WrittenFile {
                path: rel.to_string_lossy().into_owned(),
                signal,
                day: day_name.clone(),
                rows: rows_each * sorted.len(),
                bytes,
                bundles: bundles.clone(),
            };
            let mut conn = ctx.db.lock();
            let tx = conn.transaction()?;
            dataset::catalog_insert(&tx, &file, "compacted", now)?;
            for ((id, _), bundle) in sorted.iter().zip(&bundles) {
                tx.execute(
                    "INSERT INTO bundles (bundle_id, station_id, sequence, size, sha256, received_at_ms,
                                          state, rows_stored, processed_at_ms, person_id, evidence_pruned_at_ms)
                     VALUES (?1, 1, 0, 0, '', ?2, 'processed', ?3, ?2, ?4, ?2)",
                    nachtwacht::params![bundle, now, rows_each as i64, id],
                )?;
            }
            tx.commit()?;
            out.files += 1;
            out.rows += file.rows;
            out.bytes += bytes;
        }
    }
    Ok(out)
}

/// The research table: one row per person and day, under the research pseudonym.
fn write_research(ctx: &Context, rids: &[String], days: usize, day0: i64) -> anyhow::Result<usize> {
    let n = rids.len() * days;
    let mut rid = Vec::with_capacity(n);
    let mut day = Vec::with_capacity(n);
    for r in rids {
        for d in 0..days {
            rid.push(r.clone());
            day.push(((day0 / DAY_MS) + d as i64) as i32);
        }
    }
    let mut df = df!(
        "rid" => rid,
        "day" => day,
        "valid_wear_minutes" => vec![1_380.0f64; n],
    )?;
    df.with_column(df.column("day")?.cast(&DataType::Date)?)?;
    nachtwacht::evaluate::write_research_table(
        &ctx.blobs,
        nachtwacht::base::blobs::RESEARCH_DAILY,
        &mut df,
    )?;
    Ok(n)
}

/// Reads every batch of each file and writes it unchanged to a new file beside `scratch`: the
/// work an erasure cannot avoid, without the filtering, catalog and audit.
fn plain_rewrite(
    files: &[PathBuf],
    scratch: &Path,
    signal_of: &dyn Fn(&Path) -> Signal,
) -> anyhow::Result<usize> {
    let mut rows = 0;
    for (i, f) in files.iter().enumerate() {
        let target = scratch.join(format!("plain-{i}.parquet"));
        // A batch at a time, as erasure reads and writes: a day of BVP is gigabytes.
        let batches = dataset::read_parquet_batches(f)?.inspect(|b| {
            rows += b.as_ref().map_or(0, |b| b.num_rows());
        });
        dataset::write_parquet_stream(
            &target,
            &dataset::stored_schema(signal_of(f)),
            RowOrder::ByPerson,
            batches,
        )?;
        std::fs::remove_file(&target)?;
    }
    Ok(rows)
}

/// The catalogued files that hold `pid`'s rows. The bench's data directory keeps its files
/// locally, so the paths stay valid after the readers' hold is released (as erasure needs).
fn files_of(ctx: &Context, signals: &[Signal]) -> anyhow::Result<Vec<PathBuf>> {
    let readers = dataset::Readers::of(ctx)?;
    let mut out = Vec::new();
    for s in signals {
        out.extend(readers.signal_files(*s)?);
    }
    Ok(out)
}

/// One measured erasure: its name, the person erased (id, pid), the signals of their device, and
/// how many persons share those files.
type Group<'a> = (&'a str, &'a (i64, String), Vec<Signal>, usize);

fn signal_of_path(path: &Path) -> Signal {
    let name = path
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Signal::ALL
        .into_iter()
        .find(|s| s.name() == name)
        .unwrap_or(Signal::Ankle)
}

pub fn run(args: RetentionArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = args.dir.clone().unwrap_or_else(|| tmp.path().join("data"));
    let now = nachtwacht::base::time::now_ms();
    nachtwacht::server::init::init(&root, &nachtwacht::base::config::Config::default(), now)
        .context("init")?;
    let ctx = Context::open(&root)?;
    // Every personal class due as soon as a supervision ends.
    let text = policy::DEFAULT_POLICY
        .replace(
            "[raw_readings]\nkeep_days = 90",
            "[raw_readings]\nkeep_days = 0",
        )
        .replace("[alerts]\nkeep_days = 1825", "[alerts]\nkeep_days = 0")
        .replace("[research]\nkeep_days = 1825", "[research]\nkeep_days = 0");
    std::fs::write(ctx.dir.retention_policy(), text)?;
    let policy = policy::load(&ctx.dir, &ctx.db, "bench", now)?;
    nachtwacht::registry::enroll::add_station(&ctx, "bench-station", "bench")?;
    let pseudonyms = Pseudonymiser::load(&ctx.dir)?;
    let enrol = |prefix: &str, n: usize, programme| -> anyhow::Result<Vec<(i64, String)>> {
        (0..n)
            .map(|i| {
                let id = nachtwacht::registry::enroll::add_person(
                    &ctx,
                    &format!("{prefix}-{i:05}"),
                    programme,
                    "bench",
                )?;
                Ok((id, pseudonyms.operational(id)))
            })
            .collect()
    };
    eprintln!("building the data directory in {}", root.display());
    let ankle_persons = enrol(
        "ANKLE",
        args.ankle_people,
        nachtwacht::base::programme::Programme::AlcoholBan,
    )?;
    let wrist_persons = enrol(
        "WRIST",
        args.wristband_people,
        nachtwacht::base::programme::Programme::AggressionTraining,
    )?;
    let day0 = (now / DAY_MS - args.ankle_days.max(args.wristband_days) as i64 - 1) * DAY_MS;
    let ankle = write_group(
        &ctx,
        &ankle_persons,
        args.ankle_days,
        &[(Signal::Ankle, ANKLE_HZ)],
        86_400,
        day0,
    )?;
    let wrist = write_group(
        &ctx,
        &wrist_persons,
        args.wristband_days,
        &WRISTBAND,
        args.wristband_hours * 3600,
        day0,
    )?;
    let rids: Vec<String> = ankle_persons
        .iter()
        .chain(&wrist_persons)
        .map(|(id, _)| pseudonyms.research(*id))
        .collect();
    let research_rows = write_research(&ctx, &rids, args.ankle_days, day0)?;
    println!(
        "data: {} ankle persons × {} days: {} rows in {} files ({:.1} MB); {} wristband persons × {} days × {} h: {} rows in {} files ({:.1} MB); research: {} rows",
        args.ankle_people, args.ankle_days, ankle.rows, ankle.files, ankle.bytes as f64 / 1e6,
        args.wristband_people, args.wristband_days, args.wristband_hours, wrist.rows, wrist.files,
        wrist.bytes as f64 / 1e6, research_rows,
    );
    let scratch = root.join("bench-scratch");
    std::fs::create_dir_all(&scratch)?;
    println!(
        "{:<34} {:>6} {:>14} {:>10} {:>9} {:>9}",
        "", "files", "rows read", "rows gone", "wall s", "cpu s"
    );
    let groups: [Group; 2] = [
        (
            "ankle person",
            &ankle_persons[0],
            vec![Signal::Ankle],
            ankle_persons.len(),
        ),
        (
            "wristband person",
            &wrist_persons[0],
            WRISTBAND.iter().map(|(s, _)| *s).collect(),
            wrist_persons.len(),
        ),
    ];
    for (name, (person, _), signals, persons_in_group) in groups {
        let files = files_of(&ctx, &signals)?;
        let (rows, wall, cpu) = timed(|| plain_rewrite(&files, &scratch, &signal_of_path))?;
        println!(
            "{:<34} {:>6} {:>14} {:>10} {:>9.2} {:>9.2}",
            format!("{name}: plain rewrite (baseline)"),
            files.len(),
            rows,
            0,
            wall,
            cpu
        );
        let reference: String = ctx.db.lock().query_row(
            "SELECT reference FROM persons WHERE id = ?1",
            [person],
            |r| r.get(0),
        )?;
        nachtwacht::lifecycle::supervision::close(
            &ctx,
            &reference,
            nachtwacht::base::time::now_ms(),
            "bench",
        )?;
        let at = nachtwacht::base::time::now_ms() + 1;
        let ((_, report), wall, cpu) = timed(|| {
            Ok(retention::run(
                &ctx,
                &policy,
                at,
                false,
                "bench",
                &|_, _, _| {},
            )?)
        })?;
        anyhow::ensure!(
            report.identities == 1,
            "the person was not erased: {report:?}"
        );
        anyhow::ensure!(
            report.readings == rows / persons_in_group,
            "{} rows erased, {} expected",
            report.readings,
            rows / persons_in_group
        );
        println!(
            "{:<34} {:>6} {:>14} {:>10} {:>9.2} {:>9.2}",
            format!("{name}: erasure (retention run)"),
            report.dataset_files,
            rows,
            report.readings,
            wall,
            cpu
        );
    }
    Ok(())
}
