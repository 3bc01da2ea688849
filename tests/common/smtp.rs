//! A real SMTP server for the notification tests: Python's aiosmtpd (`tests/smtp/sink.py`),
//! requiring STARTTLS with a certificate from a CA made here, and AUTH after it.
//!
//! The Python comes from `NACHTWACHT_TEST_PYTHON` (set by `.ci/run`, whose virtualenv has
//! `tests/smtp/requirements.txt`), or from a virtualenv this helper makes once in the target
//! directory with those pinned packages from PyPI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "nachtwacht";
pub const PASSWORD: &str = "mail-secret";

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The PEM of the CA that signed the server's certificate (for `ca_file`).
    pub ca_pem: String,
}

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub envelope: serde_json::Value,
    /// Headers and body as sent.
    pub raw: String,
}

impl Received {
    pub fn to(&self) -> Vec<String> {
        self.envelope["to"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
}

impl SmtpSink {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    /// A server on `port` (a restarted one, for retries).
    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = nachtwacht::trust::pki::create_ca().unwrap();
        let server = nachtwacht::trust::pki::issue_server_cert(&ca, "localhost").unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, &server.cert_pem).unwrap();
        std::fs::write(&key, &server.key_pem).unwrap();
        let out = dir.path().join("received");
        std::fs::create_dir(&out).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/sink.py");
        let mut child = Command::new(python())
            .arg(script)
            .args([&cert, &key, &out])
            .args([&port.to_string(), USER, PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Self {
            child,
            port,
            dir,
            ca_pem: ca.cert_pem,
        }
    }

    pub fn messages(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("received"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap();
                let (envelope, raw) = text.split_once('\n').unwrap();
                Received {
                    envelope: serde_json::from_str(envelope).unwrap(),
                    raw: raw.to_string(),
                }
            })
            .collect()
    }

    /// The messages once there are at least `n` (panics after `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                start.elapsed() < timeout,
                "{} of {n} messages after {timeout:?}",
                m.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `[notifications.smtp]` section for this server, with the CA and password written into
    /// the data directory `root`.
    pub fn configure(&self, root: &Path) -> nachtwacht::base::config::SmtpConfig {
        std::fs::write(root.join("mail-ca.pem"), &self.ca_pem).unwrap();
        std::fs::write(root.join("smtp-password"), format!("{PASSWORD}\n")).unwrap();
        nachtwacht::base::config::SmtpConfig {
            host: "localhost".into(),
            port: self.port,
            tls: nachtwacht::base::config::SmtpTls::Starttls,
            ca_file: Some("mail-ca.pem".into()),
            username: Some(USER.into()),
            password_file: Some("smtp-password".into()),
            from: "nachtwacht <nachtwacht@reclassering.test>".into(),
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Python that imports aiosmtpd.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("NACHTWACHT_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smtp-venv");
    let python = venv.join("bin/python");
    if python.exists() {
        return python;
    }
    // Made under a private name and renamed into place, so test binaries running at once never
    // use a half-installed one.
    let building = venv.with_extension(format!("{}", std::process::id()));
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&building)
        .status()
        .unwrap()
        .success()
        && Command::new(building.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/requirements.txt"))
            .status()
            .unwrap()
            .success();
    assert!(
        ok,
        "could not install aiosmtpd from PyPI; set NACHTWACHT_TEST_PYTHON to a Python that has it"
    );
    if std::fs::rename(&building, &venv).is_err() {
        // Another test binary was first.
        let _ = std::fs::remove_dir_all(&building);
    }
    python
}
