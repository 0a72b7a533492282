//! A small WebDriver client (the W3C protocol over HTTP, with reqwest) for headless Chromium
//! through Debian's `chromedriver`: no npm, no browser download. [`Browser::start`] finds the
//! binaries; where they are missing the caller skips with a clear message, unless
//! `CHORDNET_REQUIRE_BROWSER=1` or `CI=true` (then it fails: CI installs them, see `.ci/run`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f61cd23ac56";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    profile: PathBuf,
}

/// Where Chromium and its driver are, if installed.
fn binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |env: &str, names: &[&str]| -> Option<PathBuf> {
        if let Ok(p) = std::env::var(env) {
            return Some(PathBuf::from(p)).filter(|p| p.is_file());
        }
        names.iter().map(PathBuf::from).find(|p| p.is_file())
    };
    let browser = find(
        "CHORDNET_CHROMIUM",
        &[
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ],
    )?;
    let driver = find("CHORDNET_CHROMEDRIVER", &["/usr/bin/chromedriver"])?;
    Some((browser, driver))
}

/// Whether a missing browser must fail the test rather than skip it.
pub fn browser_required() -> bool {
    std::env::var("CHORDNET_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

impl Browser {
    /// A headless Chromium session, or `None` (after printing why) when none is installed and
    /// none is required.
    pub async fn start(profile: &Path) -> Option<Browser> {
        let Some((browser, driver)) = binaries() else {
            assert!(
                !browser_required(),
                "Chromium and chromedriver are required (CI=true or CHORDNET_REQUIRE_BROWSER=1) \
                 but not installed: apt-get install chromium chromium-driver"
            );
            eprintln!(
                "SKIP: no Chromium/chromedriver (apt-get install chromium chromium-driver); \
                 the browser test did not run"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = std::fs::remove_dir_all(profile);
        std::fs::create_dir_all(profile).expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-extensions",
                    "--disable-dev-shm-usage", "--window-size=1400,1300",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            http,
            profile: profile.to_path_buf(),
        };
        let v = b.send(reqwest::Method::POST, "/session", Some(caps)).await;
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Some(b)
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("chromedriver answers");
        let status = resp.status();
        let v: Value = resp.json().await.expect("chromedriver JSON");
        assert!(status.is_success(), "{path}: {status} {v}");
        v["value"].clone()
    }

    /// Ends the session (Chromium exits) and stops the driver.
    pub async fn close(mut self) {
        let path = self.at("");
        let _ = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await;
        self.session.clear();
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.send(
            reqwest::Method::POST,
            &self.at("/url"),
            Some(json!({"url": url})),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.send(
            reqwest::Method::POST,
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs an asynchronous script: it calls `arguments[arguments.length - 1]` with its value.
    pub async fn eval_async(&self, script: &str) -> Value {
        self.send(
            reqwest::Method::POST,
            &self.at("/execute/async"),
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Polls `script` until it returns a truthy value (bounded); returns that value.
    pub async fn wait_for(&self, what: &str, limit: Duration, script: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval(script, json!([])).await;
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self
            .send(
                reqwest::Method::POST,
                &self.at("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        // The W3C key is ELEMENT; take any single key (drivers have varied).
        v[ELEMENT]
            .as_str()
            .or_else(|| {
                v.as_object()
                    .filter(|o| o.len() == 1)?
                    .values()
                    .next()?
                    .as_str()
            })
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.send(
            reqwest::Method::POST,
            &self.at(&format!("/element/{e}/value")),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.send(
            reqwest::Method::POST,
            &self.at(&format!("/element/{e}/click")),
            Some(json!({})),
        )
        .await;
    }

    /// A PNG of the element `css`, written to `file`.
    pub async fn screenshot(&self, css: &str, file: &Path) {
        let e = self.find(css).await;
        let v = self
            .send(
                reqwest::Method::GET,
                &self.at(&format!("/element/{e}/screenshot")),
                None,
            )
            .await;
        let png = base64_decode(v.as_str().expect("base64 PNG"));
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).expect("artifact dir");
        }
        std::fs::write(file, png).expect("write screenshot");
    }

    /// The browser's console log since the last call: `(level, message)`.
    pub async fn console(&self) -> Vec<(String, String)> {
        let v = self
            .send(
                reqwest::Method::POST,
                &self.at("/se/log"),
                Some(json!({"type": "browser"})),
            )
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Browser {
    /// Stops the driver (after [`Browser::close`], or when a test failed before it: then the
    /// session is ended first, or Chromium would outlive its killed driver).
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        let client = reqwest::Client::new();
                        let ended = client.delete(url).send();
                        let _ = tokio::time::timeout(Duration::from_secs(10), ended).await;
                    });
                }
            })
            .join();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Where test artifacts go: `<target dir>/ui-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/<profile>/deps/<test binary>
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    target.join("ui-artifacts")
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
