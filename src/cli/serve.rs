//! `tellscan serve`: load the settings, open the store, and run the HTTP service until
//! SIGTERM or SIGINT.

use crate::config::Settings;
use crate::http::{open_stores, shutdown_signal, AppState, Bound};

/// A multi-threaded tokio runtime for the async commands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("tellscan-io").build()?)
}

/// Run the service.
pub fn run(
    mut settings: Settings,
    addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<std::process::ExitCode> {
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
