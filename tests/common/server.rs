//! The real service on a random loopback port, for HTTP tests: embedded store in a temp
//! dir or Redis from `super::redis::RedisServer`, settings adjustable per test.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use tellscan::auth::key::Tier;
use tellscan::config::Settings;
use tellscan::http::{open_stores, AppState, Bound};
use tokio::sync::oneshot;

/// The admin token every test server is started with.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Default settings for tests: embedded store in `data_dir`, admin token set, a small pool.
pub fn settings(data_dir: &std::path::Path) -> Settings {
    let mut s = Settings::load_with_env(None, Vec::<(String, String)>::new()).expect("default settings load");
    s.server.data_dir = data_dir.to_path_buf();
    s.server.addr = "127.0.0.1:0".parse().unwrap();
    s.admin.token = ADMIN_TOKEN.to_string();
    s.server.workers = 2;
    s.server.shutdown_grace_secs = 5;
    s
}

/// A running server; stops (gracefully) when dropped or with [`TestServer::stop`].
pub struct TestServer {
    /// Its address.
    pub addr: SocketAddr,
    /// Its state (store, key service, metrics).
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Keeps the embedded store's directory alive.
    pub dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Start with default test settings on an embedded store in a fresh temp dir.
    pub async fn embedded() -> TestServer {
        Self::embedded_with(|_| {}).await
    }

    /// Start on a fresh embedded store, after `adjust` changes the settings.
    pub async fn embedded_with(adjust: impl FnOnce(&mut Settings)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = settings(dir.path());
        adjust(&mut s);
        let mut server = Self::start(s).await;
        server.dir = Some(dir);
        server
    }

    /// Start on Redis at `url`, after `adjust` changes the settings.
    pub async fn redis_with(url: &str, adjust: impl FnOnce(&mut Settings)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = settings(dir.path());
        s.store.redis_url = url.to_string();
        adjust(&mut s);
        let mut server = Self::start(s).await;
        server.dir = Some(dir);
        server
    }

    /// Start with exactly these settings.
    pub async fn start(settings: Settings) -> TestServer {
        let stores = open_stores(&settings).expect("store opens");
        let addr = settings.server.addr;
        let state = AppState::build(settings, stores).expect("state builds");
        let bound = Bound::bind(Arc::clone(&state), addr).await.expect("binds");
        let addr = bound.local_addr().expect("local address");
        assert!(addr.ip().is_loopback(), "test servers listen on loopback only");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.run(async move {
            let _ = rx.await;
        }));
        TestServer { addr, state, stop: Some(tx), task: Some(task), dir: None }
    }

    /// `http://127.0.0.1:PORT` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Create a key directly through the key service; returns the plaintext key.
    pub async fn key(&self, tier: &str) -> String {
        let issued =
            self.state.keys.create("test", Tier::parse(tier).expect("tier")).await.expect("key is created");
        issued.key.reveal()
    }

    /// Stop gracefully and wait for the server to end.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ends cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// An HTTP client that never uses a proxy (tests talk to loopback only).
pub fn client() -> reqwest::Client {
    // reqwest is built without a bundled TLS provider; the service installs ring
    tellscan::outbound::client::install_crypto_provider();
    reqwest::Client::builder().no_proxy().build().expect("client builds")
}

/// A multipart form with `file` (and `model` when given).
pub fn form(bytes: Vec<u8>, file_name: &str, model: Option<&str>) -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string());
    let form = reqwest::multipart::Form::new().part("file", part);
    match model {
        Some(m) => form.text("model", m.to_string()),
        None => form,
    }
}

/// A small real JPEG (a synthetic picture, quality 90).
pub fn small_jpeg() -> Vec<u8> {
    super::encode(&super::picture(320, 240), image::ImageFormat::Jpeg)
}

/// `POST /api/detect` with `form`, and `x-api-key` / `x-detection-source` when given.
pub fn detect_request(
    server: &TestServer,
    key: Option<&str>,
    source: Option<&str>,
    form: reqwest::multipart::Form,
) -> reqwest::RequestBuilder {
    let mut request = client().post(server.url("/api/detect")).multipart(form);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(source) = source {
        request = request.header("x-detection-source", source);
    }
    request
}

/// `POST /api/v1/analyses` with `form` and `x-api-key`; the status and JSON body.
pub async fn submit_analyses(
    server: &TestServer,
    key: &str,
    form: reqwest::multipart::Form,
) -> (u16, serde_json::Value) {
    let resp = client()
        .post(server.url("/api/v1/analyses"))
        .header("x-api-key", key)
        .multipart(form)
        .send()
        .await
        .expect("submit answered");
    status_json(resp).await
}

/// `GET /api/v1/analyses/{id}` with `x-api-key`; the status and JSON body.
pub async fn poll_analysis(server: &TestServer, key: &str, id: &str) -> (u16, serde_json::Value) {
    let resp = client()
        .get(server.url(&format!("/api/v1/analyses/{id}")))
        .header("x-api-key", key)
        .send()
        .await
        .expect("poll answered");
    status_json(resp).await
}

/// `GET /api/usage/status`, with `x-api-key` when given (consumes no quota).
pub fn usage_request(server: &TestServer, key: Option<&str>) -> reqwest::RequestBuilder {
    let request = client().get(server.url("/api/usage/status"));
    match key {
        Some(key) => request.header("x-api-key", key),
        None => request,
    }
}

/// An admin API call (`GET`, `POST` or `PUT`), with `Authorization: Bearer <token>` when a
/// token is given and a JSON body when one is given.
pub fn admin_request(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let url = server.url(path);
    let c = client();
    let mut request = match method {
        "GET" => c.get(url),
        "POST" => c.post(url),
        "PUT" => c.put(url),
        other => panic!("unexpected method {other}"),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request
}

/// The status and the JSON body of an answer.
pub async fn status_json(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

/// Used counts of the minute, day and month windows of a `/api/usage/status` body.
pub fn used(usage: &serde_json::Value) -> [u64; 3] {
    ["minute", "day", "month"].map(|w| {
        usage["windows"][w]["used"].as_u64().unwrap_or_else(|| panic!("windows.{w}.used in {usage}"))
    })
}

/// The public id of a key `imag_<id>_<secret>`.
pub fn key_id(key: &str) -> &str {
    key.strip_prefix("imag_").and_then(|r| r.split('_').next()).expect("key shape")
}

/// The secret part of a key `imag_<id>_<secret>`.
pub fn key_secret(key: &str) -> &str {
    key.rsplit('_').next().expect("key shape")
}

/// Milliseconds left in the current UTC minute.
pub fn ms_left_in_minute() -> u64 {
    use chrono::Timelike;
    let now = chrono::Utc::now();
    60_000 - (u64::from(now.second()) * 1000 + u64::from(now.timestamp_subsec_millis()).min(999))
}

/// When fewer than `margin_secs` seconds are left in the current UTC minute, wait for the next
/// one, so that requests that follow all land in one minute window (waits at most
/// `margin_secs` seconds).
pub async fn away_from_minute_edge(margin_secs: u64) {
    let left = ms_left_in_minute();
    if left < margin_secs * 1000 {
        tokio::time::sleep(std::time::Duration::from_millis(left + 300)).await;
    }
}
