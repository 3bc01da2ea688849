//! What each fuzz target checks, one function per target (`fuzz_targets/<name>.rs` calls
//! `nachtwacht_fuzz::<name>`). Each function takes the fuzzer's bytes, feeds them to one parser
//! exactly as the service does, and panics when something that must hold does not: not only "no
//! crash", but accept ⇒ re-encode round-trips, limits hold, and what the next stage assumes of an
//! accepted input is true.
//!
//! The same functions are replayed over the checked-in corpora (`corpus/<name>/`) and the inputs
//! that once failed (`regressions/<name>/`) by the normal test suite (`tests/fuzz_corpora.rs`), so a
//! crash found once stays fixed. Time and memory per input are bounded by libFuzzer itself
//! (`-timeout`, `-rss_limit_mb`, `-malloc_limit_mb`; see docs/fuzzing.md) and, for the decoder, by
//! the allocation count kept here ([`peak_allocated_during`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use nachtwacht_wire::bundle::{self, DecodedBundle};
use nachtwacht_wire::protocol::reader::RequestReader;
use nachtwacht_wire::protocol::session::{Command, Event, Queued, SessionConfig, UploadSession};
use nachtwacht_wire::protocol::{self, AckCode, RequestHead};
use nachtwacht_wire::{signed, BundleId, Signal};

/// The system allocator, counting the bytes a thread allocates while it measures
/// ([`peak_allocated_during`]). Installed as the global allocator of every fuzz target and of the
/// corpus replay test (whose tests run on several threads at once: hence per thread).
pub struct CountingAllocator;

thread_local! {
    /// Whether this thread measures, the bytes it holds above where it started, and their peak.
    static MEASURE: Cell<(bool, isize, isize)> = const { Cell::new((false, 0, 0)) };
}

fn count(delta: isize) {
    // try_with: the thread's locals may already be gone while it exits.
    let _ = MEASURE.try_with(|m| {
        let (on, live, peak) = m.get();
        if on {
            m.set((on, live + delta, peak.max(live + delta)));
        }
    });
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(p, layout) }
    }
}

/// Runs `f` and returns its result with the most bytes this thread held at once while it ran,
/// above what it held when `f` started (0 when the counting allocator is not installed).
pub fn peak_allocated_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    MEASURE.with(|m| m.set((true, 0, 0)));
    let out = f();
    let (_, _, peak) = MEASURE.with(|m| m.replace((false, 0, 0)));
    (out, peak.max(0) as usize)
}

/// The fuzzer's bytes read as a script: numbers and choices taken from the front, zeros once it
/// runs out, so every input is a valid script.
struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, i| n | (u64::from(self.byte()) << (8 * i)))
    }

    /// The next `len` bytes (fewer at the end).
    fn take(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The server's protocol reader ([`RequestReader`]), fed the input in chunks whose sizes the input
/// chooses. Whatever the chunking, the outcome is the same as one chunk; an accepted request
/// carries exactly the body its header announced, no more than the limit, with the digest it
/// declared; an upload's header re-encodes to the bytes that were read.
pub fn protocol_reader(data: &[u8]) {
    const MAX_BUNDLE: u64 = 1 << 16;
    let Some((&chunking, stream)) = data.split_first() else {
        return;
    };
    let whole = read_request(stream, &[stream.len()], MAX_BUNDLE);
    let sizes: Vec<usize> = stream
        .iter()
        .cycle()
        .skip(usize::from(chunking))
        .take(64)
        .map(|b| usize::from(b % 17) + usize::from(chunking & 1))
        .collect();
    let chunked = read_request(stream, &sizes, MAX_BUNDLE);
    assert_eq!(
        whole.as_ref().map_err(ToString::to_string),
        chunked.as_ref().map_err(ToString::to_string),
        "the outcome depends on how the bytes were chunked"
    );
    if let Ok(request) = whole {
        let head = &request.head;
        assert_eq!(request.body.len() as u64, head.body_len());
        match head {
            RequestHead::Upload(h) => {
                assert!(h.size <= MAX_BUNDLE, "a body over the limit was accepted");
                h.verify(&request.body.to_vec())
                    .expect("an accepted body matches its declared digest");
                let mut again = protocol::encode_upload_head(h);
                again.extend_from_slice(&request.body.to_vec());
                let reread = read_request(&again, &[again.len()], MAX_BUNDLE)
                    .expect("a re-encoded request reads again");
                assert_eq!(reread, request);
            }
            RequestHead::Heartbeat(_) => assert!(request.body.is_empty()),
        }
    }
}

fn read_request(
    stream: &[u8],
    chunk_sizes: &[usize],
    max_bundle: u64,
) -> protocol::Result<protocol::reader::Request> {
    let mut reader = RequestReader::new(protocol::PROTOCOL_VERSION, max_bundle);
    let mut rest = stream;
    for size in chunk_sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).clamp(1, rest.len()));
        rest = tail;
        reader.feed(chunk)?;
        // Bytes past an announced body are refused as they arrive, never buffered.
        if let Some(head) = reader.head() {
            assert!(reader.body_received() <= head.body_len());
        }
    }
    reader.finish()
}

/// The station's upload session ([`UploadSession`]) driven by a script of transport events, the
/// server's replies among them as raw acknowledgement bytes ([`protocol::decode_ack`]), with times
/// and retry hints of any size. A bundle is deleted only on a reply that names it (or names
/// nothing) with `stored` or `duplicate`; every bundle is at every moment in exactly one place
/// (queued, in flight, deleted or set aside); no more streams are open than allowed.
pub fn station_session(data: &[u8]) {
    let mut script = Script(data);
    let cfg = SessionConfig {
        servers: usize::from(script.byte() % 4) + 1,
        max_in_flight: usize::from(script.byte() % 5) + 1,
        backoff_base_ms: script.u64() % 100_000,
        backoff_cap_ms: script.u64(),
        heartbeat_interval_ms: script.u64(),
        seed: script.u64(),
    };
    let max_in_flight = cfg.max_in_flight;
    let mut session = UploadSession::new(cfg);
    let mut model = SessionModel::default();
    let mut now: u64 = 0;
    while !script.is_empty() {
        match script.byte() % 8 {
            0 => {
                let id = script.byte() % 16;
                let q = Queued {
                    bundle_id: BundleId([id; 16]),
                    sequence: u64::from(script.byte()),
                };
                model.enqueue(q.bundle_id);
                session.enqueue(q);
            }
            1 => now = now.saturating_add(script.u64() >> (script.byte() % 64)),
            2 => session.handle(now, Event::Connected),
            3 => session.handle(
                now,
                Event::ConnectFailed {
                    reason: "refused".into(),
                },
            ),
            4 => {
                model.connection_lost();
                session.handle(
                    now,
                    Event::ConnectionLost {
                        reason: "lost".into(),
                    },
                );
            }
            5 => {
                // A reply on the stream of one of the bundles in flight (or a stale one).
                let bundle_id = model.pick_sent(script.byte());
                let len = usize::from(script.byte());
                let reply = script.take(len);
                let event = match protocol::decode_ack(reply) {
                    Ok(ack) => {
                        model.acknowledged(bundle_id, &ack);
                        Event::Acknowledged { bundle_id, ack }
                    }
                    Err(e) => {
                        model.requeued(bundle_id);
                        Event::StreamFailed {
                            bundle_id,
                            reason: e.to_string(),
                        }
                    }
                };
                session.handle(now, event);
            }
            6 => {
                let bundle_id = model.pick_sent(script.byte());
                model.requeued(bundle_id);
                session.handle(
                    now,
                    Event::StreamFailed {
                        bundle_id,
                        reason: "reset".into(),
                    },
                );
            }
            _ => session.handle(
                now,
                if script.byte() & 1 == 0 {
                    Event::HeartbeatAcknowledged
                } else {
                    Event::HeartbeatFailed {
                        reason: "timeout".into(),
                    }
                },
            ),
        }
        let _ = session.poll_timeout();
        while let Some(command) = session.poll(now) {
            match command {
                Command::Send(q) => model.sent(q.bundle_id),
                Command::Delete(q) => model.delete(q.bundle_id),
                Command::SetAside { bundle, .. } => model.set_aside(bundle.bundle_id),
                Command::Connect { .. } | Command::SendHeartbeat => {}
            }
            assert!(model.in_flight.len() <= max_in_flight, "too many streams");
        }
        assert_eq!(
            session.queued(),
            model.queued.len() + model.in_flight.len(),
            "the session lost or invented a bundle"
        );
    }
}

/// Where each bundle is, as the rules say it must be.
#[derive(Default)]
struct SessionModel {
    queued: Vec<BundleId>,
    in_flight: Vec<BundleId>,
    /// Bundles in flight whose last reply says the server holds them: the only ones that may be
    /// deleted.
    held: Vec<BundleId>,
    /// Bundles in flight the server refused for good: the only ones that may be set aside.
    refused: Vec<BundleId>,
    settled: Vec<BundleId>,
}

impl SessionModel {
    fn enqueue(&mut self, id: BundleId) {
        if !self.queued.contains(&id) && !self.in_flight.contains(&id) {
            self.queued.push(id);
            self.settled.retain(|s| *s != id);
        }
    }

    fn sent(&mut self, id: BundleId) {
        let at = self.queued.iter().position(|q| *q == id);
        let at = at.expect("a bundle was sent that was not queued");
        self.queued.remove(at);
        self.in_flight.push(id);
    }

    fn pick_sent(&self, choice: u8) -> BundleId {
        match self.in_flight.as_slice() {
            [] => BundleId([choice % 16; 16]),
            sent => sent[usize::from(choice) % sent.len()],
        }
    }

    fn acknowledged(&mut self, id: BundleId, ack: &protocol::Ack) {
        if !self.in_flight.contains(&id) {
            return;
        }
        if ack.bundle_id.is_some_and(|named| named != id) {
            self.requeued(id);
            return;
        }
        match ack.code {
            AckCode::Stored | AckCode::Duplicate => self.held.push(id),
            AckCode::Rejected => self.refused.push(id),
            AckCode::Busy => self.requeued(id),
        }
    }

    fn requeued(&mut self, id: BundleId) {
        if let Some(at) = self.in_flight.iter().position(|q| *q == id) {
            self.in_flight.remove(at);
            self.queued.push(id);
        }
    }

    fn connection_lost(&mut self) {
        self.queued.append(&mut self.in_flight);
    }

    fn settle(&mut self, id: BundleId, allowed: fn(&mut Self) -> &mut Vec<BundleId>) {
        let list = allowed(self);
        let at = list.iter().position(|q| *q == id);
        assert!(
            at.is_some(),
            "{id} settled without the reply that allows it"
        );
        list.remove(at.unwrap_or_default());
        let at = self.in_flight.iter().position(|q| *q == id);
        assert!(at.is_some(), "{id} settled while not in flight");
        self.in_flight.remove(at.unwrap_or_default());
        assert!(!self.settled.contains(&id), "{id} settled twice");
        self.settled.push(id);
    }

    fn delete(&mut self, id: BundleId) {
        self.settle(id, |m| &mut m.held);
    }

    fn set_aside(&mut self, id: BundleId) {
        self.settle(id, |m| &mut m.refused);
    }
}

/// The signed envelope ([`signed::decode_signed`]): an accepted envelope re-encodes to exactly the
/// input, and its digest is the one the station signs.
pub fn signed_envelope(data: &[u8]) {
    if let Ok(envelope) = signed::decode_signed(data) {
        let again = signed::encode_signed(envelope.station, envelope.bundle, &envelope.signature);
        assert_eq!(
            again, data,
            "an accepted envelope does not re-encode to itself"
        );
        assert_eq!(
            envelope.digest(),
            signed::signing_digest(envelope.station, envelope.bundle)
        );
    }
}

/// Lets a panic that the decoder itself catches stay caught. The decoder runs arrow's IPC reader
/// inside `catch_unwind` and turns a panic there into this bundle's error (arrow panics on some
/// malformed streams its checks miss: a row count past the validity buffer, for one); libFuzzer's
/// panic hook aborts before any unwinding, which would make every such stream a crash of the
/// target although the service refuses it with a reason. Any panic the decoder does not catch
/// still reaches libfuzzer-sys, which aborts.
fn contain_arrow_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("{info}"))));
}

/// Bundle decode, v1 and v2 ([`bundle::decode_bundle`]: manifest, zstd frames, Arrow IPC), then what
/// the decode worker does with an accepted bundle: validation into quality flags, the stored rows,
/// and the Parquet write. An accepted bundle matches its manifest, decodes within the memory its
/// header declared, re-encodes (in its own version and the current one) to a bundle that decodes
/// to the same batches, and its Parquet file reads back to the rows written.
pub fn bundle_decode(data: &[u8]) {
    contain_arrow_panics();
    let declared = bundle::declared_decoded_len(data);
    let (decoded, peak) = peak_allocated_during(|| bundle::decode_bundle(data));
    let Ok(decoded) = decoded else {
        return;
    };
    let declared = declared.expect("a bundle that decodes declares its decoded size");
    assert!(declared <= bundle::MAX_BUNDLE_DECODED_LEN);
    // The decoded buffers, their Arrow arrays' copies and the input's own size bound what decoding
    // may hold at once; a bomb would blow through this.
    let bound = 4 * declared as usize + 8 * data.len() + (4 << 20);
    assert!(
        peak <= bound,
        "decoding took {peak} bytes at once; declared {declared}, bound {bound}"
    );
    check_matches_manifest(&decoded);
    let version = u16::from_le_bytes([data[8], data[9]]);
    for v in [version, bundle::BUNDLE_FORMAT_VERSION] {
        let again = bundle::encode_bundle_as(v, decoded.manifest.clone(), &decoded.batches)
            .expect("an accepted bundle re-encodes");
        let reread = bundle::decode_bundle(&again).expect("a re-encoded bundle decodes");
        // The same manifest but for the streams' sizes, which depend on how they were compressed.
        let sizes_aside = |m: &bundle::BundleManifest| {
            let mut m = m.clone();
            m.signals.iter_mut().for_each(|e| e.bytes = 0);
            m
        };
        assert_eq!(
            sizes_aside(&reread.manifest),
            sizes_aside(&decoded.manifest)
        );
        for (a, b) in reread.batches.iter().zip(&decoded.batches) {
            assert_eq!(a.signal, b.signal);
            assert_eq!(
                a.batch,
                b.batch,
                "{} changed in a round trip",
                a.signal.name()
            );
        }
    }
    store_as_the_decoder_does(&decoded);
}

fn check_matches_manifest(decoded: &DecodedBundle) {
    let entries = &decoded.manifest.signals;
    assert_eq!(entries.len(), decoded.batches.len());
    for (entry, sb) in entries.iter().zip(&decoded.batches) {
        assert_eq!(entry.signal, sb.signal);
        assert_eq!(entry.rows, sb.batch.num_rows() as u64);
        assert_eq!(sb.batch.schema(), sb.signal.schema());
        match sb.signal.nominal_rate_hz() {
            Some(_) => assert!(sb.rate_hz.is_some_and(|r| r.is_finite() && r > 0.0)),
            None => assert!(sb.rate_hz.is_none()),
        }
    }
}

fn store_as_the_decoder_does(decoded: &DecodedBundle) {
    use nachtwacht::decode::validate::{self, Window};
    let window = Window {
        not_before_ms: 0,
        not_after_ms: 2_000_000_000_000,
        assignment_ends_ms: Some(1_900_000_000_000),
    };
    let temp = decoded
        .batches
        .iter()
        .find(|b| b.signal == Signal::Temp)
        .map(|b| &b.batch);
    for sb in &decoded.batches {
        let flags = validate::validate(sb.signal, &sb.batch, sb.rate_hz, window, temp);
        assert_eq!(flags.len(), sb.batch.num_rows());
        let rows = nachtwacht::dataset::stored_rows(
            sb.signal,
            &decoded.manifest.bundle_id,
            "p-fuzz",
            &sb.batch,
            &flags,
        )
        .expect("accepted rows take the stored schema");
        let schema = rows.schema();
        let parquet = nachtwacht::dataset::encode_parquet(
            &schema,
            std::slice::from_ref(&rows),
            nachtwacht::dataset::RowOrder::Arrival,
        )
        .expect("accepted rows write as Parquet");
        let back = read_parquet(parquet);
        assert_eq!(back.num_rows(), rows.num_rows());
        // Values as written: the sensor columns and the flags (dictionaries come back plain).
        for (i, field) in schema.fields().iter().enumerate() {
            if matches!(field.name().as_str(), "pid" | "bundle_id") {
                continue;
            }
            let written = rows.column(i);
            let read = back.column(i);
            assert_eq!(written.to_data().len(), read.len());
            assert!(
                same_values(written.as_ref(), read.as_ref()),
                "column {} changed through Parquet",
                field.name()
            );
        }
    }
}

fn read_parquet(bytes: Vec<u8>) -> RecordBatch {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .expect("a file just written opens")
    .build()
    .expect("a file just written reads");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
    if batches.is_empty() {
        return RecordBatch::new_empty(schema);
    }
    arrow::compute::concat_batches(&schema, &batches).expect("batches concatenate")
}

/// Equal values, NaN equal to NaN (floats are stored as they came, NaN included).
fn same_values(a: &dyn Array, b: &dyn Array) -> bool {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Float64Type};
    match (a.data_type(), b.data_type()) {
        (DataType::Float64, DataType::Float64) => {
            let (a, b) = (
                a.as_primitive::<Float64Type>(),
                b.as_primitive::<Float64Type>(),
            );
            a.iter().zip(b.iter()).all(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                (x, y) => x.is_none() && y.is_none(),
            })
        }
        _ => a.to_data() == b.to_data(),
    }
}

/// The E4 export's CSV files ([`nachtwacht_station::source::e4::read_export_files`]): the input is
/// cut into the seven files of an export at bytes 0x1E. An accepted export gives batches of the
/// wire schema with non-decreasing timestamps for the sampled signals, which seal into a bundle the
/// server decodes.
pub fn e4_csv(data: &[u8]) {
    const FILES: [&str; 7] = [
        "EDA.csv", "BVP.csv", "HR.csv", "TEMP.csv", "ACC.csv", "IBI.csv", "tags.csv",
    ];
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.split('\u{1e}').collect();
    let read = |name: &str| {
        let i = FILES.iter().position(|f| *f == name).expect("known file");
        parts
            .get(i)
            .map(|s| s.to_string())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    };
    if let Ok(content) = nachtwacht_station::source::e4::read_export_files(read, "fuzz", "E4-FUZZ")
    {
        check_source(content);
    }
}

/// The EmbracePlus Avro reader ([`nachtwacht_station::source::embrace_avro::read_from`]).
pub fn embrace_avro(data: &[u8]) {
    if let Ok(content) =
        nachtwacht_station::source::embrace_avro::read_from(data, "fuzz.avro", "EP-FUZZ")
    {
        check_source(content);
    }
}

/// The ankle monitor's CSV ([`nachtwacht_station::source::ankle_csv::parse`]): accepted readings
/// are in time order, and cut into bundles that hold every reading once.
pub fn ankle_csv(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(readings) = nachtwacht_station::source::ankle_csv::parse(&text, "fuzz.csv") else {
        return;
    };
    let n = readings.len();
    let bundles = nachtwacht_station::source::ankle_csv::bundles(readings, "ANKLE-FUZZ");
    let rows: usize = bundles
        .iter()
        .flat_map(|b| &b.batches)
        .filter(|b| b.signal == Signal::Ankle)
        .map(|b| b.batch.num_rows())
        .sum();
    assert_eq!(rows, n, "readings lost or doubled in cutting bundles");
    for content in bundles {
        check_source(content);
    }
}

/// What every device reader's output must be: batches of the wire schema, which the station seals
/// (cut to fit) into bundles the server's decoder accepts with every row.
fn check_source(content: nachtwacht_station::source::BundleContent) {
    for sb in &content.batches {
        assert_eq!(sb.batch.schema(), sb.signal.schema());
    }
    let rows: usize = content.batches.iter().map(|b| b.batch.num_rows()).sum();
    let Ok(parts) = content.split_to_fit() else {
        return;
    };
    let mut decoded_rows = 0;
    for (i, part) in parts.into_iter().enumerate() {
        let manifest = bundle::BundleManifest {
            bundle_id: BundleId([i as u8; 16]),
            device_serial: part.device_serial.clone(),
            device_kind: part.device_kind,
            sealed_at_ms: 0,
            signals: Vec::new(),
        };
        let Ok(bytes) = bundle::encode_bundle(manifest, &part.batches) else {
            // A reader's values the wire cannot carry (a rate the manifest refuses) are the
            // station's error to report, not data lost in silence: encode says why.
            return;
        };
        let decoded = bundle::decode_bundle(&bytes).expect("a sealed bundle decodes");
        decoded_rows += decoded
            .batches
            .iter()
            .map(|b| b.batch.num_rows())
            .sum::<usize>();
    }
    assert_eq!(decoded_rows, rows, "rows lost between reading and decoding");
}

/// The research API's query body: JSON into [`nachtwacht::research::QueryRequest`], then the
/// validation that runs before any data is read or budget charged. An accepted request spends a
/// finite ε within the project's limit, asks for a known dataset and no more groups than allowed,
/// and survives a JSON round trip unchanged.
pub fn research_query(data: &[u8]) {
    use nachtwacht::research::{self, QueryRequest};
    let Ok(request) = serde_json::from_slice::<QueryRequest>(data) else {
        return;
    };
    let project = research::Project {
        id: 1,
        name: "fuzz".into(),
        epsilon_budget: 10.0,
        delta: 1e-6,
        epsilon_spent: 0.0,
        max_epsilon_per_query: 1.0,
        epsilon_sum: 0.0,
        rho_spent: 0.0,
    };
    let config = nachtwacht::base::config::Config::default().research;
    if research::validate(&request, &project, &config).is_err() {
        return;
    }
    assert!(request.epsilon.is_finite());
    assert!(request.epsilon >= research::MIN_EPSILON);
    assert!(request.epsilon <= project.max_epsilon_per_query);
    let json = serde_json::to_vec(&request).expect("a request serialises");
    let again: QueryRequest = serde_json::from_slice(&json).expect("a request reads back");
    assert_eq!(again, request);
}

/// The TOML files an operator writes: the server's config, the retention policy and the three
/// rule files. The first byte picks the file. An accepted config or rule file re-serialises to
/// TOML that parses to the same value (so nothing accepted is a value TOML cannot state, such as
/// NaN); an accepted retention policy has a period for every class.
pub fn config_toml(data: &[u8]) {
    use nachtwacht_pipelines::rules::{AlcoholRules, StressRules, TamperRules};
    let Some((&which, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    match which % 5 {
        0 => {
            use nachtwacht::base::config::Config;
            if let Ok(config) = Config::parse(&text, "fuzz.toml") {
                let again = toml::to_string(&config).expect("an accepted config serialises");
                let reread = Config::parse(&again, "again.toml")
                    .unwrap_or_else(|e| panic!("an accepted config reads back: {e}\n{again}"));
                assert_eq!(reread, config);
            }
        }
        1 => {
            use nachtwacht::lifecycle::policy::{self, DataClass};
            if let Ok(policy) = policy::parse(&text) {
                for class in DataClass::ALL {
                    let _ = policy.keep_days(class);
                }
            }
        }
        2 => round_trip_rules(&text, AlcoholRules::parse),
        3 => round_trip_rules(&text, StressRules::parse),
        _ => round_trip_rules(&text, TamperRules::parse),
    }
}

fn round_trip_rules<T, E>(text: &str, parse: fn(&str, &str) -> Result<T, E>)
where
    T: serde::Serialize + PartialEq + std::fmt::Debug,
    E: std::fmt::Display,
{
    if let Ok(rules) = parse(text, "fuzz.toml") {
        let again = toml::to_string(&rules).expect("accepted rules serialise");
        let reread = parse(&again, "again.toml")
            .unwrap_or_else(|e| panic!("accepted rules read back: {e}\n{again}"));
        assert_eq!(reread, rules);
    }
}

/// A form posted to the officers' UI ([`nachtwacht::web::FormFields::parse`]): any body
/// gives fields (none for a body that is not a form), and a form of those fields, encoded again,
/// parses to the same fields.
pub fn web_form(data: &[u8]) {
    use nachtwacht::web::FormFields;
    let fields = FormFields::parse(data);
    let mut pairs: Vec<(&String, &String)> = fields.0.iter().collect();
    pairs.sort();
    let again = serde_urlencoded::to_string(&pairs).expect("fields encode");
    let reread = FormFields::parse(again.as_bytes());
    assert_eq!(reread.0, fields.0);
    for (key, value) in &fields.0 {
        assert_eq!(fields.get(key), value);
    }
}
