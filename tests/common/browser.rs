//! A real browser for the Studio's tests: Debian's headless `chromium` driven through
//! `chromedriver` (WebDriver, on a free loopback port), with a fresh empty profile and the
//! flags that keep it off the network (no background fetches, updates or sync).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// Where `scripts/deps.sh --test` installs them (Debian's `chromium` and `chromium-driver`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The browser window's size (also the screenshots' width).
pub const WIDTH: u32 = 1280;

/// A WebDriver session on a private chromedriver; [`Browser::close`] ends both.
pub struct Browser {
    /// The session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver and a headless Chromium with an empty profile.
    pub async fn start() -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install Debian's chromium and chromium-driver (scripts/deps.sh --test does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--window-size={WIDTH},1000"),
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": args }));
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(capabilities.clone()).connect(&url).await {
                Ok(client) => break client,
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session from {CHROMEDRIVER} on port {port}: {e}"),
            }
        };
        Browser { client, driver, _profile: profile }
    }

    /// End the session (Chromium exits) and stop chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }

    /// Evaluate a JavaScript function body (`arguments` are `args`) and return its value.
    pub async fn js(&self, body: &str, args: Vec<Value>) -> Value {
        self.client.execute(body, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{body}"))
    }

    /// Wait until the JavaScript expression is true (up to 30 s; detection runs a debug build).
    pub async fn until(&self, expression: &str, what: &str) {
        let started = Instant::now();
        let body = format!("return Boolean({expression});");
        loop {
            if self.js(&body, vec![]).await == Value::Bool(true) {
                return;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let page = self.js("return document.body.innerText;", vec![]).await;
                panic!("timed out waiting for {what} ({expression}); the page says:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of the element with this id.
    pub async fn text(&self, id: &str) -> String {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("no text in #{id}: {e}"))
    }

    /// Whether the element with this id is shown.
    pub async fn visible(&self, id: &str) -> bool {
        let script =
            "const e = document.getElementById(arguments[0]); return !!e && e.offsetParent !== null;";
        self.js(script, vec![json!(id)]).await == Value::Bool(true)
    }

    /// Click the element matched by a CSS selector.
    pub async fn click(&self, css: &str) {
        let element = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        element.click().await.unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Type into the element with this id.
    pub async fn type_into(&self, id: &str, text: &str) {
        let element = self.client.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("no #{id}: {e}"));
        element.send_keys(text).await.unwrap_or_else(|e| panic!("cannot type into #{id}: {e}"));
    }

    /// Drop a file on the element with this id, as a drag from the desktop does: a `dragover`,
    /// then a `drop` whose `DataTransfer` carries the file.
    pub async fn drop_file(&self, id: &str, name: &str, mime: &str, bytes: &[u8]) {
        let script = r#"
            const [id, name, mime, bytes] = arguments;
            const file = new File([new Uint8Array(bytes)], name, { type: mime });
            const data = new DataTransfer();
            data.items.add(file);
            const zone = document.getElementById(id);
            for (const kind of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(kind, { dataTransfer: data, bubbles: true, cancelable: true }));
            }
        "#;
        self.js(script, vec![json!(id), json!(name), json!(mime), json!(bytes)]).await;
    }

    /// Save a PNG of the whole page (the window grown to the page's height) as `dir/name.png`
    /// and return its path; the picture is checked to be a PNG of the window's width.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let height = self.js("return document.documentElement.scrollHeight;", vec![]).await;
        let height = height.as_u64().unwrap_or(1000).clamp(600, 4000) as u32;
        self.client.set_window_size(WIDTH, height + 140).await.expect("window resizes");
        let png = self.client.screenshot().await.expect("screenshot");
        let picture = image::load_from_memory_with_format(&png, image::ImageFormat::Png).expect("a PNG");
        assert!(
            picture.width() >= WIDTH / 2 && picture.height() >= 300,
            "{}×{}",
            picture.width(),
            picture.height()
        );
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).expect("screenshot saved");
        if let Some(keep) = std::env::var_os("TELLSCAN_STUDIO_SCREENSHOTS") {
            std::fs::create_dir_all(&keep).expect("screenshot folder");
            std::fs::write(Path::new(&keep).join(format!("{name}.png")), &png).expect("screenshot kept");
        }
        self.client.set_window_size(WIDTH, 1000).await.expect("window resizes back");
        path
    }
}
