//! `tellscan serve`: load the settings, open the store, and run the HTTP service until
//! SIGTERM or SIGINT.

use std::path::PathBuf;

use crate::config::Settings;
use crate::http::{open_stores, shutdown_signal, AppState, Bound};

/// Settings every store-using command shares (`serve`, `keys`).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// A TOML file layered over the defaults (also TELLSCAN_CONFIG).
    #[arg(long, env = "TELLSCAN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store (default ./data; also TELLSCAN_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use Redis for keys and counters (also TELLSCAN_REDIS_URL or REDIS_URL).
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
}

impl StoreArgs {
    /// The settings: defaults, file, environment, then these flags.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = Settings::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            settings.server.data_dir = dir.clone();
        }
        if let Some(url) = &self.redis_url {
            settings.store.redis_url = url.clone();
        }
        Ok(settings)
    }
}

/// A multi-threaded tokio runtime for the async commands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("tellscan-io").build()?)
}

/// Run the service.
pub fn run(store: &StoreArgs, addr: Option<std::net::SocketAddr>) -> anyhow::Result<std::process::ExitCode> {
    let mut settings = store.settings()?;
    if let Some(addr) = addr {
        settings.server.addr = addr;
    }
    runtime()?.block_on(async move {
        let stores = open_stores(&settings)?;
        let kind = stores.store.kind();
        let addr = settings.server.addr;
        let state = AppState::build(settings, stores)?;
        let bound = Bound::bind(state, addr).await?;
        let local = bound.local_addr().unwrap_or(addr);
        // the one line operators and scripts wait for
        eprintln!("tellscan {} listening on http://{local} ({kind} store)", env!("CARGO_PKG_VERSION"));
        bound.run(shutdown_signal()).await?;
        eprintln!("tellscan stopped");
        Ok(std::process::ExitCode::SUCCESS)
    })
}
