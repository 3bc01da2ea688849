//! Shared set-up for the end-to-end tests: a real data directory, a real server on ephemeral
//! loopback ports, real certificates made at test time.

#![allow(dead_code)]

use std::path::PathBuf;

use nachtwacht::config::Config;
use nachtwacht::server::{Context, ListenOverrides, RunningServer};
use nachtwacht::{enroll, init};
use nachtwacht_station::source::simulator::{DrinkingEpisode, SimulatorConfig};
use nachtwacht_station::{SourceConfig, StationConfig};
use nachtwacht_wire::DeviceKind;

pub const DAY_MS: i64 = 86_400_000;

pub struct TestServer {
    pub tmp: tempfile::TempDir,
    pub ctx: Context,
    pub server: RunningServer,
}

pub fn loopback() -> ListenOverrides {
    ListenOverrides {
        quic: Some("127.0.0.1:0".parse().unwrap()),
        http: Some("127.0.0.1:0".parse().unwrap()),
    }
}

pub async fn start_server(config: Config) -> TestServer {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    init::init(&root, &config, nachtwacht::now_ms()).unwrap();
    let ctx = Context::open(&root).unwrap();
    let server = nachtwacht::server::start(ctx.clone(), loopback())
        .await
        .unwrap();
    TestServer { tmp, ctx, server }
}

/// Midnight UTC `days` days ago.
pub fn days_ago(days: i64) -> i64 {
    nachtwacht::now_ms().div_euclid(DAY_MS) * DAY_MS - days * DAY_MS
}

impl TestServer {
    /// Enrolls a station for a simulated ankle monitor assigned to a new alcohol-ban person.
    pub fn ankle_station(
        &self,
        name: &str,
        serial: &str,
        days: u32,
        drinking: Vec<DrinkingEpisode>,
    ) -> (StationConfig, PathBuf, i64) {
        let start_ms = days_ago(days as i64);
        let person =
            enroll::add_person(&self.ctx, &format!("CASE-{name}"), "alcohol-ban", "test").unwrap();
        enroll::assign_device(
            &self.ctx,
            serial,
            DeviceKind::AnkleMonitor,
            person,
            start_ms,
            "test",
        )
        .unwrap();
        let mut station = enroll::add_station(&self.ctx, name, "test").unwrap();
        station.servers = vec![self.server.quic_addr.to_string()];
        station.source = SourceConfig::Simulator(SimulatorConfig {
            device: DeviceKind::AnkleMonitor,
            device_serial: serial.into(),
            start_ms,
            days,
            seed: 7,
            drinking,
            wear_hours_per_day: 0,
        });
        let dir = self.tmp.path().join("stations").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        (station, dir, person)
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.ctx.db.lock().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}
