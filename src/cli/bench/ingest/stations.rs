//! The simulated stations: client endpoints over a few UDP sockets, connecting with each station's
//! own certificate, the barrier that releases a herd at once, and the uploads over the real protocol.

use super::*;

pub(super) fn client_endpoints(n: usize) -> anyhow::Result<Vec<quinn::Endpoint>> {
    use socket2::{Domain, Protocol, Socket, Type};
    (0..n.max(1))
        .map(|_| {
            let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            socket.set_recv_buffer_size(8 << 20)?;
            socket.set_send_buffer_size(8 << 20)?;
            socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into())?;
            quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                None,
                socket.into(),
                Arc::new(quinn::TokioRuntime),
            )
            .context("client socket")
        })
        .collect()
}

/// A station's client configuration, made once as the station agent makes it: the session tickets
/// the server sends are kept in it, so the station's next connection resumes its session.
pub(super) fn client_for(station: &StationConfig) -> anyhow::Result<quinn::ClientConfig> {
    let tls = client_tls_config(station)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(Arc::new(client_transport()));
    Ok(client)
}

pub(super) async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    client: &quinn::ClientConfig,
) -> anyhow::Result<quinn::Connection> {
    Ok(endpoint
        .connect_with(client.clone(), addr, "localhost")?
        .await?)
}

/// The start line of a phase: every station waits at the barrier; the last to arrive starts the
/// clock.
pub(super) struct Go {
    pub(super) barrier: Arc<tokio::sync::Barrier>,
    pub(super) clock: Arc<std::sync::OnceLock<(Instant, f64, f64)>>,
    /// The server processes of the phase (one, or each node of a several-node herd).
    pub(super) server_pids: Arc<Vec<u32>>,
}

impl Go {
    pub(super) async fn wait(&self) -> anyhow::Result<()> {
        if self.barrier.wait().await.is_leader() {
            let mut server_cpu = 0.0;
            for pid in self.server_pids.iter() {
                server_cpu += cpu_seconds_of(&pid.to_string())?;
            }
            let client_cpu = cpu_seconds_of("self")?;
            let _ = self.clock.set((Instant::now(), server_cpu, client_cpu));
        }
        Ok(())
    }
}

/// What crossed one station's connection while the clock ran, as the station counted it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Packets {
    /// UDP datagrams the server sent to the station (after GSO: each is one QUIC packet or a
    /// few coalesced).
    pub(super) from_server: u64,
    /// UDP datagrams the station sent.
    pub(super) to_server: u64,
    /// Frames in the server's packets: acknowledgements and flow-control credit.
    pub(super) acks: u64,
    pub(super) max_data: u64,
    pub(super) max_stream_data: u64,
}

impl Packets {
    fn between(before: &quinn::ConnectionStats, after: &quinn::ConnectionStats) -> Self {
        Self {
            from_server: after.udp_rx.datagrams - before.udp_rx.datagrams,
            to_server: after.udp_tx.datagrams - before.udp_tx.datagrams,
            acks: after.frame_rx.acks - before.frame_rx.acks,
            max_data: after.frame_rx.max_data - before.frame_rx.max_data,
            max_stream_data: after.frame_rx.max_stream_data - before.frame_rx.max_stream_data,
        }
    }

    pub(super) fn add(&mut self, other: &Self) {
        self.from_server += other.from_server;
        self.to_server += other.to_server;
        self.acks += other.acks;
        self.max_data += other.max_data;
        self.max_stream_data += other.max_stream_data;
    }
}

/// One station: connect and wait for everyone (or, cold, wait for everyone and connect), then
/// upload its bundles one after the other.
pub(super) async fn upload_station(
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    s: PhaseStation,
    go: Go,
    cold: bool,
    schedule: Option<(Duration, Duration)>,
) -> anyhow::Result<(Vec<Duration>, usize, Packets)> {
    let conn = if cold {
        go.wait().await?;
        connect(&endpoint, addr, &s.client).await?
    } else {
        let conn = connect(&endpoint, addr, &s.client).await?;
        let hello = encode_heartbeat(&heartbeat(&s));
        let ack = exchange(&conn, hello, bytes::Bytes::new())
            .await
            .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            ack.code == AckCode::Stored,
            "heartbeat refused: {:?}",
            ack.reason
        );
        go.wait().await?;
        conn
    };
    let began = tokio::time::Instant::now();
    // A cold station connected on the clock: its handshake's packets count too.
    let stats_before = if cold {
        quinn::ConnectionStats::default()
    } else {
        conn.stats()
    };
    let mut latencies = Vec::with_capacity(s.uploads.len());
    let mut busy = 0;
    for (i, u) in s.uploads.iter().enumerate() {
        if let Some((offset, interval)) = schedule {
            tokio::time::sleep_until(began + offset + interval * i as u32).await;
        }
        loop {
            let t = Instant::now();
            let ack = exchange(&conn, u.head.clone(), u.body.clone())
                .await
                .map_err(anyhow::Error::msg)?;
            match ack.code {
                AckCode::Stored | AckCode::Duplicate => {
                    latencies.push(t.elapsed());
                    break;
                }
                AckCode::Busy => {
                    busy += 1;
                    tokio::time::sleep(Duration::from_millis(ack.retry_after_ms.unwrap_or(1_000)))
                        .await;
                }
                AckCode::Rejected => bail!("bundle rejected: {:?}", ack.reason),
            }
        }
    }
    let packets = Packets::between(&stats_before, &conn.stats());
    conn.close(0u32.into(), b"done");
    Ok((latencies, busy, packets))
}

/// What a station reports when it comes back: its spool holds the bundles it is about to send.
pub(super) fn heartbeat(s: &PhaseStation) -> Heartbeat {
    Heartbeat {
        station: s.config.name.clone(),
        sent_at_ms: nachtwacht::base::time::now_ms(),
        clock_offset_ms: None,
        spool: SpoolStatus {
            pending_bundles: s.uploads.len() as u64,
            pending_bytes: s.uploads.iter().map(|u| u.body.len() as u64).sum(),
            capacity_bytes: 1 << 30,
            full: false,
        },
        devices: Vec::new(),
        renewal_csr: None,
    }
}

/// Opens one idle connection per station, a few hundred handshakes at a time.
pub(super) async fn open_idle(
    endpoints: &[quinn::Endpoint],
    addr: SocketAddr,
    stations: &[StationConfig],
) -> anyhow::Result<Vec<quinn::Connection>> {
    let mut out = Vec::with_capacity(stations.len());
    for (chunk_no, chunk) in stations.chunks(250).enumerate() {
        let mut set = tokio::task::JoinSet::new();
        for (i, s) in chunk.iter().enumerate() {
            let endpoint = endpoints[(chunk_no * 250 + i) % endpoints.len()].clone();
            let client = client_for(s)?;
            set.spawn(async move { connect(&endpoint, addr, &client).await });
        }
        while let Some(c) = set.join_next().await {
            out.push(c??);
        }
    }
    Ok(out)
}
