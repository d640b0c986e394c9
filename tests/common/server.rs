//! The real service on a random loopback port, for HTTP tests: embedded store in a temp
//! dir or Redis from `super::redis::RedisServer`, settings adjustable per test.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use tellscan::auth::key::Tier;
use tellscan::config::Settings;
use tellscan::http::{open_store, AppState, Bound};
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
        let store = open_store(&settings).expect("store opens");
        let addr = settings.server.addr;
        let state = AppState::build(settings, store).expect("state builds");
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
