//! A minimal W3C WebDriver client for headless Chromium through chromedriver, shared by the
//! dashboard test and the search benchmark (`#[path]`-included by both).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use logagg::testsuite::{free_port, wait_until};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A WebDriver session on a chromedriver process of our own.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
}

impl Browser {
    pub async fn start() -> Browser {
        let port = free_port();
        // A process group of its own, so that Drop can end chromedriver, the Chromium it
        // started and Chromium's helpers (crash handlers) together.
        let driver = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/setup.sh installs it)");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let ready = wait_until(TIMEOUT, || async {
            http.get(format!("{base}/status"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
        })
        .await;
        assert!(ready, "chromedriver did not start");
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"],
            },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session JSON");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Browser {
            driver,
            http,
            session: format!("{base}/session/{session}"),
        }
    }

    pub async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        let response: Value = request
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver JSON");
        response["value"].clone()
    }

    pub async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body; `arguments` available) in the page.
    pub async fn run(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Waits until `script` returns true.
    pub async fn until(&self, what: &str, script: &str) {
        self.until_within(TIMEOUT, what, script).await;
    }

    /// Waits at most `timeout` until `script` returns true.
    pub async fn until_within(&self, timeout: Duration, what: &str, script: &str) {
        let done = wait_until(timeout, || async { self.run(script).await == json!(true) }).await;
        assert!(done, "waited {timeout:?} for {what}: {script}");
    }

    pub async fn screenshot(&self, name: &str) {
        let data = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let encoded = data.as_str().expect("base64 screenshot");
        let directory =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/dashboard");
        std::fs::create_dir_all(&directory).expect("test-output dir");
        std::fs::write(
            directory.join(format!("{name}.png")),
            decode_base64(encoded),
        )
        .expect("screenshot");
    }

    /// No error the page caught (`window.__logaggErrors`) and none in the browser console
    /// (failed requests, exceptions), read from chromedriver's log.
    pub async fn assert_no_errors(&self, page: &str) {
        let errors = self.run("return window.__logaggErrors;").await;
        assert_eq!(errors, json!([]), "{page} raised errors");
        let console = self
            .command(
                reqwest::Method::POST,
                "/se/log",
                json!({ "type": "browser" }),
            )
            .await;
        let entries = console
            .as_array()
            .unwrap_or_else(|| panic!("no console log: {console}"));
        let severe: Vec<&Value> = entries
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .collect();
        assert!(severe.is_empty(), "{page}: console errors {severe:?}");
    }
}

impl Drop for Browser {
    /// Ends the session (chromedriver quits its Chromium), then the whole process group, so
    /// no headless Chromium or crash handler outlives the test.
    fn drop(&mut self) {
        delete_session(&self.session);
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

/// `DELETE` of a session URL (`http://127.0.0.1:PORT/session/ID`) over a blocking socket:
/// Drop cannot await.
fn delete_session(session_url: &str) {
    let Some(rest) = session_url.strip_prefix("http://") else {
        return;
    };
    let Some((authority, path)) = rest.split_once('/') else {
        return;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(authority) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |byte: u8| -> u32 {
        match byte {
            b'A'..=b'Z' => u32::from(byte - b'A'),
            b'a'..=b'z' => u32::from(byte - b'a') + 26,
            b'0'..=b'9' => u32::from(byte - b'0') + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|byte| *byte != b'=' && !byte.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut accumulator = 0_u32;
        for (index, byte) in chunk.iter().enumerate() {
            accumulator |= value(*byte) << (18 - 6 * index);
        }
        let produced = chunk.len() * 6 / 8;
        for index in 0..produced {
            out.push((accumulator >> (16 - 8 * index)) as u8);
        }
    }
    out
}
