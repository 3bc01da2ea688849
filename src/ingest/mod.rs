//! QUIC ingest: the only module that touches quinn and rustls on the server side.
//!
//! * [`tls`]: client certificates must chain to the nachtwacht CA and not be on its revocation list;
//!   the list is reloaded while running, so a revocation takes effect without a restart.
//! * After the handshake the certificate's fingerprint must belong to an enrolled, unrevoked station
//!   (the station's identity), and the station may hold only so many connections ([`limits`]).
//! * Each bidirectional stream carries one request (`nachtwacht_wire::protocol`), parsed by the pure
//!   [`RequestReader`]; this module only moves bytes and applies decisions. A garbage or oversized
//!   request gets `rejected` with its reason on that stream alone.
//! * An upload is acknowledged `stored` only after [`commit`] made it durable; `busy` with a retry
//!   delay when the station is over its rate, the spool over its high-water mark, the disk near its
//!   reserve, or too many bytes are being received at once.
//! * Shutdown stops accepting, lets uploads under way finish (bounded by `drain_timeout_secs`), then
//!   closes connections.
//!
//! Every refused connection is logged and written to the audit log.

mod stream;

pub mod admission;
pub mod commit;
pub mod limits;
pub mod runtime;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::base::db::OptionalExtension;
use nachtwacht_wire::protocol::reader::RequestReader;
use nachtwacht_wire::protocol::{
    encode_ack, version_from_alpn, Ack, AckCode, Heartbeat, ProtocolError, RequestHead,
};
use rustls::pki_types::CertificateDer;
use tokio::sync::{watch, Notify};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::base::Context;
use crate::spool::{Known, Spool};
use admission::{ConnectionWindow, ReceiveSlots};
use commit::{Committer, Outcome};
use limits::{ConnectionCount, RateLimiter};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
    #[error(transparent)]
    File(#[from] crate::base::fsio::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long one request may take from its first byte to its acknowledgement.
const STREAM_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the revocation list is checked for a new version.
const CRL_POLL: Duration = Duration::from_secs(1);
/// Read size per chunk from a stream.
const CHUNK: usize = 64 * 1024;

/// An enrolled station, as identified by its certificate.
#[derive(Debug, Clone)]
struct Station {
    id: i64,
    name: String,
}

struct Live {
    station_id: i64,
    conn: quinn::Connection,
}

/// Shared state of the ingest.
struct Shared {
    ctx: Context,
    spool: Spool,
    committer: Committer,
    stored: Arc<Notify>,
    rates: Mutex<RateLimiter>,
    connections: Mutex<ConnectionCount>,
    live: Mutex<HashMap<usize, Live>>,
    /// Last contact per station, written to SQL once a second (one commit for all connections,
    /// instead of one fsync per handshake).
    contacts: Mutex<HashMap<i64, i64>>,
    in_flight_bytes: AtomicU64,
    /// Uploads whose bodies are being received at once ([`admission`]).
    receive_slots: ReceiveSlots,
    streams: TaskTracker,
    /// The age recipient stations should seal to, advertised in positive acknowledgements;
    /// refreshed from `age_keys` by the reload loop so `nachtwacht keys rotate` needs no restart.
    recipient: Mutex<Option<String>>,
    /// Session ticket keys, the same across configuration reloads.
    tickets: Arc<crate::trust::tickets::TicketKeys>,
}

pub struct Ingest {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
}

impl Ingest {
    pub fn bind(ctx: Context, addr: SocketAddr, stored: Arc<Notify>) -> Result<Self> {
        {
            let conn = ctx.db.lock();
            crate::trust::crl::refresh_if_due(&ctx.dir, &conn, crate::base::time::now_ms())
                .map_err(|e| Error::Tls(format!("revocation list: {e}")))?;
        }
        let tickets = Arc::new(
            crate::trust::tickets::TicketKeys::open(&ctx.dir)
                .map_err(|e| Error::Tls(format!("session ticket keys: {e}")))?,
        );
        let server_config = tls::server_config(&ctx.dir, &ctx.config.ingest, tickets.clone())?;
        let socket = bind_udp(addr).map_err(|source| Error::Bind { addr, source })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| Error::Bind { addr, source })?;
        let reader = crate::base::db::Db::open_target(ctx.db.target())
            .map_err(|e| Error::Tls(format!("opening a read connection: {e}")))?;
        let spool = Spool::new(ctx.blobs.clone(), ctx.db.clone()).with_reader(reader);
        let swept = spool.sweep_unregistered()?;
        if swept > 0 {
            info!(
                files = swept,
                "removed unacknowledged uploads left by a crash"
            );
        }
        spool.refresh_backlog()?;
        let receive_slots = ReceiveSlots::new(ctx.config.ingest.max_receiving_uploads as usize);
        let committer = Committer::start(spool.clone(), receive_slots.clone(), commit::LINGER)
            .map_err(|source| Error::Io {
                path: "group-commit thread".into(),
                source,
            })?;
        let rates = RateLimiter::new(ctx.config.ingest.max_bundles_per_minute);
        let shared = Arc::new(Shared {
            ctx,
            spool,
            committer,
            stored,
            rates: Mutex::new(rates),
            connections: Mutex::new(ConnectionCount::default()),
            live: Mutex::new(HashMap::new()),
            contacts: Mutex::new(HashMap::new()),
            in_flight_bytes: AtomicU64::new(0),
            receive_slots,
            streams: TaskTracker::new(),
            recipient: Mutex::new(None),
            tickets,
        });
        shared.refresh_recipient();
        Ok(Self { endpoint, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr().expect("bound socket")
    }

    /// Accepts connections until `shutdown` turns true, then drains uploads under way.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let shared = self.shared.clone();
        let reload = tokio::spawn(reload_loop(
            shared.clone(),
            self.endpoint.clone(),
            shutdown.clone(),
        ));
        let connections = TaskTracker::new();
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let remote = incoming.remote_address();
                    let shared = shared.clone();
                    let stop = shutdown.clone();
                    connections.spawn(
                        async move { shared.handle_connection(incoming, stop).await }
                            .instrument(tracing::info_span!("station_connection", %remote)),
                    );
                }
                _ = shutdown.changed() => break,
            }
        }
        // No new connections; connection loops stop accepting streams on the same signal.
        self.endpoint.set_server_config(None);
        connections.close();
        shared.streams.close();
        let drain = Duration::from_secs(shared.ctx.config.ingest.drain_timeout_secs);
        if tokio::time::timeout(drain, shared.streams.wait())
            .await
            .is_err()
        {
            warn!(
                open = shared.streams.len(),
                "drain timed out; unacknowledged uploads will be re-sent by their stations"
            );
        }
        self.endpoint.close(0u32.into(), b"server shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), connections.wait()).await;
        reload.abort();
        if let Err(e) = shared.flush_contacts() {
            warn!(error = %e, "could not record station contact times");
        }
        info!("ingest stopped");
    }
}

/// Socket buffer the ingest asks for. Thousands of stations share one UDP socket; with the
/// kernel's default (~208 KiB) bursts overflow it and every lost packet costs a retransmission
/// timeout. The receive slots let 256 × 64 KiB = 16 MiB of payload be in flight, but the kernel
/// charges each datagram's whole buffer (packet headers and allocation overhead too) against the
/// limit, so the 16 MiB that an 8 MiB request gets (the kernel doubles it) does not hold it. With
/// 8 MiB the ingest benchmark lost 700–2,600 datagrams per run whenever the server fell behind for
/// a moment; with 32 MiB none in eleven runs (docs/benchmarks.md). It is a limit, not an allocation: memory is used
/// only while datagrams wait. The kernel caps the request at `net.core.rmem_max` / `wmem_max`; a
/// process with CAP_NET_ADMIN gets it regardless (see operations.md).
const UDP_BUFFER_BYTES: usize = 32 << 20;

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_recv_buffer_size(UDP_BUFFER_BYTES)?;
    socket.set_send_buffer_size(UDP_BUFFER_BYTES)?;
    force_buffer(&socket, libc::SO_RCVBUFFORCE);
    force_buffer(&socket, libc::SO_SNDBUFFORCE);
    socket.bind(&addr.into())?;
    info!(
        receive_buffer = socket.recv_buffer_size()?,
        send_buffer = socket.send_buffer_size()?,
        "UDP socket buffers"
    );
    Ok(socket.into())
}

/// Asks for [`UDP_BUFFER_BYTES`] beyond the sysctl cap (`SO_RCVBUFFORCE` / `SO_SNDBUFFORCE`). Needs
/// CAP_NET_ADMIN; without it the kernel refuses and the capped size stays, which is only logged.
fn force_buffer(socket: &socket2::Socket, option: libc::c_int) {
    use std::os::fd::AsRawFd;
    let size = UDP_BUFFER_BYTES as libc::c_int;
    // SAFETY: a valid socket descriptor, and a pointer to an int with its correct length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        debug!(
            error = %std::io::Error::last_os_error(),
            "socket buffer stays at the net.core limit (no CAP_NET_ADMIN)"
        );
    }
}

/// Picks up new revocation lists: swaps the TLS configuration for new handshakes and closes open
/// connections of stations revoked since. Also re-signs the list before it expires and refreshes
/// the spool backlog.
async fn reload_loop(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    mut shutdown: watch::Receiver<bool>,
) {
    let current_number = |shared: &Shared| -> Option<i64> {
        shared
            .spool
            .reader()
            .lock()
            .query_row("SELECT MAX(number) FROM crls", [], |r| r.get(0))
            .ok()
            .flatten()
    };
    let mut seen = current_number(&shared);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CRL_POLL) => {}
            _ = shutdown.changed() => return,
        }
        // Database work (a CRL re-signing, contact times, the backlog gauge) on a blocking thread.
        let s2 = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            {
                let conn = s2.ctx.db.lock();
                if let Err(e) = crate::trust::crl::refresh_if_due(
                    &s2.ctx.dir,
                    &conn,
                    crate::base::time::now_ms(),
                ) {
                    warn!(error = %e, "could not re-sign the revocation list");
                }
            }
            if let Err(e) = s2.flush_contacts() {
                warn!(error = %e, "could not record station contact times");
            }
            // The decoder lowers the backlog; the high-water check reads it from here.
            if let Err(e) = s2.spool.refresh_backlog() {
                warn!(error = %e, "could not read the spool backlog");
            }
            s2.refresh_recipient();
        })
        .await;
        let number = current_number(&shared);
        if number == seen {
            continue;
        }
        match tls::server_config(
            &shared.ctx.dir,
            &shared.ctx.config.ingest,
            shared.tickets.clone(),
        ) {
            Ok(cfg) => {
                endpoint.set_server_config(Some(cfg));
                seen = number;
                info!(crl = ?number, "revocation list reloaded");
            }
            Err(e) => {
                warn!(error = %e, "new revocation list unusable; keeping the previous configuration");
                continue;
            }
        }
        let revoked: Vec<i64> = {
            let conn = shared.ctx.db.lock();
            let mut stmt =
                match conn.prepare("SELECT id FROM stations WHERE revoked_at_ms IS NOT NULL") {
                    Ok(s) => s,
                    Err(_) => continue,
                };
            stmt.query_map([], |r| r.get(0))
                .map(|rows| rows.filter_map(Result::ok).collect())
                .unwrap_or_default()
        };
        for live in shared.live.lock().expect("live lock").values() {
            if revoked.contains(&live.station_id) {
                warn!(
                    station_id = live.station_id,
                    "closing connection of a revoked station"
                );
                live.conn.close(2u32.into(), b"certificate revoked");
            }
        }
    }
}

impl Shared {
    /// Reads the current age recipient (blocking: call from a blocking thread or at start-up).
    fn refresh_recipient(&self) {
        let current = crate::trust::keys::current_recipient(&self.spool.reader().lock());
        match current {
            Ok(Some(r)) => *self.recipient.lock().expect("recipient lock") = Some(r),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "could not read the current age recipient"),
        }
    }

    fn flush_contacts(&self) -> crate::base::db::Result<()> {
        let contacts = std::mem::take(&mut *self.contacts.lock().expect("lock"));
        if contacts.is_empty() {
            return Ok(());
        }
        let mut conn = self.ctx.db.lock();
        let tx = conn.transaction()?;
        for (station, at) in contacts {
            tx.execute(
                "UPDATE stations SET last_contact_ms = MAX(COALESCE(last_contact_ms, 0), ?2) WHERE id = ?1",
                (station, at),
            )?;
        }
        tx.commit()
    }

    /// Looks the certificate up ([`registry_read`]). Also the check a resumed session gets in place
    /// of the verifier's: rustls restores the certificate from the session ticket, so its station
    /// must still be enrolled and unrevoked, and the certificate inside its validity.
    async fn station_for(&self, certs: Vec<CertificateDer<'static>>) -> Option<Station> {
        let leaf = certs.first()?;
        if !crate::trust::pki::valid_at_der(leaf, crate::base::time::now_ms()) {
            return None;
        }
        let fingerprint = crate::trust::pki::cert_fingerprint_der(leaf);
        let reader = self.spool.reader().clone();
        let f = fingerprint.clone();
        let (station, renewed) =
            registry_read(reader.backend(), move || Self::lookup_station(&reader, &f))
                .await
                .flatten()?;
        if renewed {
            // A write (it takes the database's write lock): always on a blocking thread.
            let ctx = self.ctx.clone();
            let id = station.id;
            let promoted = tokio::task::spawn_blocking(move || {
                crate::registry::enroll::promote_pending(&ctx, id, &fingerprint)
            })
            .await;
            if let Ok(Err(e)) = promoted {
                warn!(error = %e, station_id = id, "renewed certificate not recorded as current");
            }
        }
        Some(station)
    }

    /// The active station a certificate belongs to: its current one, or the renewed one it has
    /// not used before (`true`: the caller makes it current).
    fn lookup_station(reader: &crate::base::db::Db, fingerprint: &str) -> Option<(Station, bool)> {
        reader
            .lock()
            .query_row(
                "SELECT id, name, pending_cert_sha256 IS NOT DISTINCT FROM ?1 FROM stations
                  WHERE (cert_sha256 = ?1 OR pending_cert_sha256 = ?1) AND revoked_at_ms IS NULL",
                [fingerprint],
                |r| {
                    Ok((
                        Station {
                            id: r.get(0)?,
                            name: r.get(1)?,
                        },
                        r.get(2)?,
                    ))
                },
            )
            .optional()
            .ok()
            .flatten()
    }

    /// Logs a refused connection and records it in the audit log (on a blocking thread).
    fn refuse(&self, remote: SocketAddr, reason: &str) {
        warn!(%remote, %reason, "connection refused");
        let detail = serde_json::json!({ "reason": reason }).to_string();
        let db = self.ctx.db.clone();
        tokio::task::spawn_blocking(move || {
            let conn = db.lock();
            if let Err(e) = crate::trust::audit::append(
                &conn,
                crate::base::time::now_ms(),
                "ingest",
                "ingest.refuse",
                &remote.ip().to_string(),
                &detail,
            ) {
                warn!(error = %e, "could not audit a refused connection");
            }
        });
    }

    async fn handle_connection(
        self: Arc<Self>,
        incoming: quinn::Incoming,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let remote = incoming.remote_address();
        let conn = match incoming.await {
            Ok(c) => c,
            Err(e) => {
                // Missing, foreign-CA, expired and revoked certificates all end here.
                self.refuse(remote, &format!("handshake failed: {e}"));
                return;
            }
        };
        let version = conn
            .handshake_data()
            .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|h| h.protocol)
            .and_then(|alpn| version_from_alpn(&alpn));
        let Some(version) = version else {
            self.refuse(remote, "no supported protocol version negotiated");
            conn.close(3u32.into(), b"no supported protocol version");
            return;
        };
        let certs = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
        let station = match certs {
            Some(c) => self.station_for(*c).await,
            None => None,
        };
        let Some(station) = station else {
            self.refuse(
                remote,
                "certificate belongs to no enrolled, unrevoked station, or is outside its validity",
            );
            conn.close(1u32.into(), b"unknown or revoked station");
            return;
        };
        let max = self.ctx.config.ingest.max_connections_per_station;
        if !self
            .connections
            .lock()
            .expect("lock")
            .try_open(station.id, max)
        {
            self.refuse(
                remote,
                &format!("station #{} already has {max} connections", station.id),
            );
            conn.close(4u32.into(), b"too many connections for this station");
            return;
        }
        let key = conn.stable_id();
        self.live.lock().expect("lock").insert(
            key,
            Live {
                station_id: station.id,
                conn: conn.clone(),
            },
        );
        self.contacts
            .lock()
            .expect("lock")
            .insert(station.id, crate::base::time::now_ms());
        crate::base::metrics::metrics().station_connections.inc();
        debug!(station_id = station.id, version, "station connected");
        let window = ConnectionWindow::new(conn.clone());
        loop {
            let accepted = tokio::select! {
                s = conn.accept_bi() => s,
                _ = shutdown.changed() => break,
            };
            match accepted {
                Ok((send, recv)) => {
                    let this = self.clone();
                    // Every line of a request names its station (by id: a station's name is chosen
                    // by people and may say whose home it is) and, once read, its bundle.
                    let span = tracing::info_span!(
                        "request",
                        station_id = station.id,
                        bundle = tracing::field::Empty
                    );
                    let station = station.clone();
                    let window = window.clone();
                    self.streams.spawn(
                        async move {
                            this.handle_stream(&station, &window, version, send, recv)
                                .await
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    debug!(station_id = station.id, reason = %e, "connection ended");
                    break;
                }
            }
        }
        self.live.lock().expect("lock").remove(&key);
        self.connections.lock().expect("lock").close(station.id);
        crate::base::metrics::metrics().station_connections.dec();
    }

    async fn record_heartbeat(&self, station: &Station, hb: Heartbeat) -> Ack {
        let (db, ctx) = (self.ctx.db.clone(), self.ctx.clone());
        let station_id = station.id;
        tokio::task::spawn_blocking(move || {
            let mut ack = Self::store_heartbeat(&db, station_id, &hb);
            // A renewal request is answered with the next certificate (the heartbeat is
            // recorded whatever becomes of it).
            if let (Some(csr), AckCode::Stored) = (&hb.renewal_csr, &ack.code) {
                match crate::registry::enroll::renew_from_request(&ctx, station_id, csr) {
                    Ok(cert) => ack.certificate = Some(cert),
                    Err(e) => warn!(error = %e, station_id, "certificate renewal refused"),
                }
            }
            ack
        })
        .await
        .unwrap_or_else(|e| {
            warn!(error = %e, "heartbeat task failed");
            Ack::busy(
                None,
                "heartbeat not recorded".into(),
                5_000,
                crate::base::time::now_ms(),
            )
        })
    }

    fn store_heartbeat(db: &crate::base::db::Db, station_id: i64, hb: &Heartbeat) -> Ack {
        let now = crate::base::time::now_ms();
        let devices = serde_json::to_string(&hb.devices).unwrap_or_else(|_| "[]".into());
        let result = {
            let mut conn = db.lock();
            conn.transaction().and_then(|tx| {
                tx.execute(
                    "INSERT INTO station_heartbeats (station_id, received_at_ms, sent_at_ms, clock_offset_ms,
                        spool_pending_bundles, spool_pending_bytes, spool_full, devices)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    crate::params![
                        station_id,
                        now,
                        hb.sent_at_ms,
                        hb.clock_offset_ms
                            .map(crate::base::time::bounded_clock_offset_ms),
                        hb.spool.pending_bundles as i64,
                        hb.spool.pending_bytes as i64,
                        hb.spool.full,
                        devices
                    ],
                )?;
                tx.execute(
                    "UPDATE stations SET last_contact_ms = ?2 WHERE id = ?1",
                    (station_id, now),
                )?;
                tx.commit()
            })
        };
        match result {
            Ok(()) => Ack::stored(None, now),
            Err(e) => {
                warn!(error = %e, "could not record a heartbeat");
                Ack::busy(None, "heartbeat not recorded".into(), 5_000, now)
            }
        }
    }
}

/// Runs a short read of the bundle and station registry (an indexed point lookup through the
/// spool's reader connection): in place on SQLite, on a blocking thread on PostgreSQL. `None` if
/// the blocking thread failed.
///
/// Why in place on SQLite: the read takes microseconds, and in WAL mode no writer blocks the
/// reader connection. Handed to tokio's blocking pool, every upload's duplicate check cost a
/// thread wake-up and two context switches on the ingest's cores, and a herd of 1,000 stations
/// grew the pool to 512 threads, all waiting for that one connection (docs/benchmarks.md). On
/// PostgreSQL the same read is a network round trip, which must not hold up every other
/// connection on the ingest's thread.
async fn registry_read<T: Send + 'static>(
    backend: crate::base::db::Backend,
    read: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    match backend {
        crate::base::db::Backend::Sqlite => Some(read()),
        crate::base::db::Backend::Postgres => tokio::task::spawn_blocking(read).await.ok(),
    }
}

#[cfg(test)]
mod tests {
    use crate::base::db::Backend;

    /// On SQLite a registry read runs on the ingest's own thread (no blocking-pool thread is woken
    /// or started per upload); on PostgreSQL, a network round trip, on another thread.
    #[tokio::test(flavor = "current_thread")]
    async fn a_registry_read_runs_in_place_on_sqlite_only() {
        let caller = std::thread::current().id();
        let on = |backend| super::registry_read(backend, || std::thread::current().id());
        assert_eq!(on(Backend::Sqlite).await, Some(caller));
        assert_ne!(on(Backend::Postgres).await, Some(caller));
    }
}
