//! A small W3C WebDriver client over HTTP (ureq) for the browser tests: starts Debian's
//! `chromedriver`, drives headless Chromium, and stops both when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
}

fn try_call(req: ureq::Request, body: Option<Value>) -> Result<Value, String> {
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match r {
        Ok(r) => Ok(r.into_json::<Value>().unwrap()["value"].clone()),
        Err(ureq::Error::Status(code, r)) => Err(format!(
            "webdriver {code}: {}",
            r.into_string().unwrap_or_default()
        )),
        Err(e) => panic!("webdriver transport: {e}"),
    }
}

fn call(req: ureq::Request, body: Option<Value>) -> Value {
    try_call(req, body).unwrap_or_else(|e| panic!("{e}"))
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session.
    pub fn start() -> Self {
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect(
                "chromedriver not found: install Debian's chromium and chromium-driver \
                 (.ci/run does this)",
            );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1200,1000"]
            }
        }}});
        let value = call(ureq::post(&format!("{base}/session")), Some(caps));
        let session = value["sessionId"].as_str().expect("session id").to_string();
        Browser {
            driver,
            base,
            session,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    /// Saves downloads into `dir` without asking (Chrome DevTools `Browser.setDownloadBehavior`).
    pub fn allow_downloads(&self, dir: &std::path::Path) {
        call(
            ureq::post(&self.url("/goog/cdp/execute")),
            Some(json!({"cmd": "Browser.setDownloadBehavior",
                        "params": {"behavior": "allow", "downloadPath": dir}})),
        );
    }

    /// Waits (up to 30 s) until `path` exists and its download has finished.
    pub fn wait_download(&self, path: &std::path::Path) -> Vec<u8> {
        let partial = path.with_extension("tar.crdownload");
        for _ in 0..300 {
            if path.exists() && !partial.exists() {
                return std::fs::read(path).unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} was not downloaded", path.display());
    }

    pub fn goto(&self, url: &str) {
        call(ureq::post(&self.url("/url")), Some(json!({"url": url})));
    }

    pub fn current_url(&self) -> String {
        call(ureq::get(&self.url("/url")), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits (up to 10 s) until the URL ends with `suffix`, and returns it either way.
    pub fn wait_url(&self, suffix: &str) -> String {
        for _ in 0..100 {
            let url = self.current_url();
            if url.ends_with(suffix) {
                self.wait_loaded();
                return url;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.current_url()
    }

    pub fn source(&self) -> String {
        call(ureq::get(&self.url("/source")), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The visible text of the whole page. Retries while a navigation a click started replaces
    /// the document under it (a "stale element").
    pub fn text(&self) -> String {
        for _ in 0..50 {
            self.wait_loaded();
            let body = try_call(
                ureq::post(&self.url("/element")),
                Some(json!({"using": "css selector", "value": "body"})),
            );
            let Some(body) = body
                .ok()
                .and_then(|v| v[ELEMENT].as_str().map(String::from))
            else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            match try_call(ureq::get(&self.url(&format!("/element/{body}/text"))), None) {
                Ok(v) => return v.as_str().unwrap().to_string(),
                Err(e) if e.contains("stale element") => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the page never settled")
    }

    /// Waits (up to 10 s) until the element's text is `want`, and returns its text either way.
    pub fn wait_text_of(&self, css: &str, want: &str) -> String {
        let mut last = String::new();
        for _ in 0..100 {
            self.wait_loaded();
            // Mid-navigation the element may be missing or stale: try again.
            let found = try_call(
                ureq::post(&self.url("/element")),
                Some(json!({"using": "css selector", "value": css})),
            );
            if let Some(e) = found
                .ok()
                .and_then(|v| v[ELEMENT].as_str().map(String::from))
            {
                if let Ok(v) = try_call(ureq::get(&self.url(&format!("/element/{e}/text"))), None) {
                    last = v.as_str().unwrap_or("").to_string();
                    if last == want {
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        last
    }

    /// Waits (up to 10 s) until the page's text contains `needle`; returns the text either way.
    pub fn wait_for_text(&self, needle: &str) -> String {
        let mut text = String::new();
        for _ in 0..100 {
            text = self.text();
            if text.contains(needle) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        text
    }

    /// Waits until the current document has loaded.
    pub fn wait_loaded(&self) {
        for _ in 0..100 {
            let state = try_call(
                ureq::post(&self.url("/execute/sync")),
                Some(json!({"script": "return document.readyState", "args": []})),
            );
            if matches!(state, Ok(Value::String(ref s)) if s == "complete") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn find(&self, css: &str) -> String {
        let v = call(
            ureq::post(&self.url("/element")),
            Some(json!({"using": "css selector", "value": css})),
        );
        match v[ELEMENT].as_str() {
            Some(id) => id.to_string(),
            None => panic!(
                "no element {css:?} at {}: {v}\n{}",
                self.current_url(),
                self.source()
            ),
        }
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        call(
            ureq::post(&self.url(&format!("/element/{e}/value"))),
            Some(json!({"text": text})),
        );
    }

    /// Saves what the browser shows as a PNG file.
    pub fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        self.wait_loaded();
        let png = call(ureq::get(&self.url("/screenshot")), None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// Resizes the window (the layout check at a phone's width).
    pub fn set_size(&self, width: u32, height: u32) {
        call(
            ureq::post(&self.url("/window/rect")),
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Runs a script in the page and returns its value.
    pub fn eval(&self, script: &str) -> Value {
        call(
            ureq::post(&self.url("/execute/sync")),
            Some(json!({"script": script, "args": []})),
        )
    }

    pub fn click(&self, css: &str) {
        let e = self.find(css);
        call(
            ureq::post(&self.url(&format!("/element/{e}/click"))),
            Some(json!({})),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
