//! The HTTP service: a thin poem + poem-openapi layer over the detector, the key service and
//! the quota gate. [`AppState::build`] wires the parts from the settings; [`app`] builds the
//! routes (tests start it on a random loopback port); [`Bound::bind`] and [`Bound::run`] serve it until
//! a signal ([`shutdown_signal`]).

pub mod admin;
pub mod admission;
pub mod allow;
pub mod analyses_api;
pub mod api;
pub mod cache;
pub mod declared;
pub mod errors;
pub mod guard;
pub mod metrics;
pub mod ratelimit;
pub mod report_schema;
pub mod spec;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::make;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server};
use poem_openapi::OpenApiService;

use crate::analyses::worker::Workers;
use crate::auth::KeyService;
use crate::config::Settings;
use crate::forensics::Detector;
use crate::outbound::client::OutboundClient;
use crate::pool::DetectionPool;
use crate::quota::QuotaGate;
use crate::store::analyses::SharedAnalyses;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::RedisStore;
use crate::store::SharedStore;
use cache::ResultCache;
use errors::error_response;
use guard::SourceTag;
use metrics::Metrics;

/// Everything a request needs, built once at start-up and shared.
pub struct AppState {
    /// The settings the service runs with.
    pub settings: Settings,
    /// The forensic detector.
    pub detector: Arc<Detector>,
    /// Keys and counters.
    pub store: SharedStore,
    /// Analysis records and queue.
    pub analyses: SharedAnalyses,
    /// Key verification and management.
    pub keys: KeyService,
    /// Quota admission.
    pub quota: QuotaGate,
    /// The detection threads.
    pub pool: Arc<DetectionPool>,
    /// Reports by image digest.
    pub cache: ResultCache,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The guarded client for submitted URLs.
    pub outbound: OutboundClient,
    /// The guarded client for webhooks (the same address policy, the webhook timeout).
    pub webhook_client: OutboundClient,
    /// Wake-ups of this replica's analysis workers and webhook senders.
    pub wakers: crate::analyses::Wakers,
    /// The budget of request bodies held at once (`server.upload_buffer_bytes`).
    pub uploads: guard::UploadBudget,
}

/// The stores the settings select: keys and counters, and analyses (the same backend).
pub struct Stores {
    /// Keys and quota counters.
    pub store: SharedStore,
    /// Analysis records and their work queue.
    pub analyses: SharedAnalyses,
}

/// Open the store the settings select.
pub fn open_stores(settings: &Settings) -> anyhow::Result<Stores> {
    Ok(match settings.store.redis_url() {
        Some(url) => {
            let redis = Arc::new(RedisStore::connect(
                url,
                settings.store.redis_pool_size,
                Duration::from_millis(settings.store.redis_timeout_ms),
            )?);
            Stores { store: Arc::clone(&redis) as SharedStore, analyses: redis }
        }
        None => {
            let embedded = Arc::new(EmbeddedStore::open(&settings.server.data_dir)?);
            Stores { store: Arc::clone(&embedded) as SharedStore, analyses: embedded }
        }
    })
}

impl AppState {
    /// Build the state over open stores.
    pub fn build(settings: Settings, stores: Stores) -> anyhow::Result<Arc<AppState>> {
        let Stores { store, analyses } = stores;
        let detector = Arc::new(Detector::new(&settings.detector.detector_config())?);
        let keys = KeyService::new(Arc::clone(&store), Duration::from_secs(settings.keys.cache_ttl_secs))
            .with_flood_limit(settings.keys.flood_limit());
        let metrics = Metrics::new(keys.argon2_counter(), keys.flood_refusals_counter());
        let quota =
            QuotaGate::new(Arc::clone(&store), settings.quota.tiers.clone(), settings.quota.on_store_error);
        let pool = DetectionPool::new(settings.workers(), settings.server.queue)?;
        let cache = ResultCache::new(settings.server.result_cache_entries);
        let outbound = OutboundClient::new(
            settings.analyses.address_policy()?,
            Duration::from_secs(settings.analyses.url_timeout_secs),
        )?;
        let webhook_client = OutboundClient::new(
            settings.analyses.address_policy()?,
            Duration::from_secs(settings.analyses.webhook_timeout_secs),
        )?;
        let uploads = guard::UploadBudget::new(settings.server.upload_buffer_bytes);
        Ok(Arc::new(AppState {
            settings,
            detector,
            store,
            analyses,
            keys,
            quota,
            pool,
            cache,
            metrics,
            outbound,
            webhook_client,
            wakers: crate::analyses::Wakers::default(),
            uploads,
        }))
    }
}

/// The OpenAPI service (public and admin operations).
pub fn openapi_service() -> OpenApiService<(api::PublicApi, analyses_api::AnalysesApi, admin::AdminApi), ()> {
    OpenApiService::new(
        (api::PublicApi, analyses_api::AnalysesApi, admin::AdminApi),
        "tellscan",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Tells whether an image was made by a generative model, and why: a 0-100 score, a verdict, \
             the evidence of every forensic module, and quota headers.",
    )
}

/// The OpenAPI document as the server serves it (generated, then refined by [`spec`]).
pub fn openapi_json() -> String {
    spec::served(|| openapi_service().spec()).to_string()
}

/// All routes, with the state attached.
pub fn app(state: Arc<AppState>) -> impl Endpoint<Output = Response> {
    let service = openapi_service();
    let docs = service.swagger_ui();
    let spec = make(|_| async { openapi_json().with_content_type("application/json; charset=utf-8") });
    let metrics_state = Arc::clone(&state);
    Route::new()
        .nest("/", service)
        .at("/api/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/studio", crate::studio::routes())
        .at(
            "/metrics",
            make(move |_| {
                let state = Arc::clone(&metrics_state);
                async move {
                    let pool = &state.pool;
                    state.metrics.queue_depth.set(pool.queued() as i64);
                    state.metrics.detections_running.set(pool.running() as i64);
                    if let Ok((queued, claimed)) = state.analyses.queue_depth().await {
                        state.metrics.analyses_queued.set(queued as i64);
                        state.metrics.analyses_processing.set(claimed as i64);
                    }
                    state
                        .metrics
                        .render()
                        .with_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
                }
            }),
        )
        .data(Arc::clone(&state))
        .around(move |ep, req| observe(ep, req, Arc::clone(&state)))
}

/// Shape every error, name the allowed methods on a 405, and count every request by route,
/// status and source.
async fn observe<E: Endpoint>(ep: Arc<E>, req: Request, state: Arc<AppState>) -> poem::Result<Response> {
    let path = req.uri().path().to_string();
    let route = route_label(&path);
    let mut response = match ep.call(req).await.map(IntoResponse::into_response) {
        Ok(r) if r.status().is_client_error() || r.status().is_server_error() => errors::shape(r, ""),
        Ok(r) => r,
        Err(e) => error_response(e),
    };
    if response.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED {
        if let Some(allow) = allow::allow_for(&path).and_then(|a| a.parse().ok()) {
            response.headers_mut().insert(poem::http::header::ALLOW, allow);
        }
    }
    let source = response.extensions().get::<SourceTag>().map_or("none", |s| s.0.name());
    state.metrics.request(route, response.status().as_u16(), source);
    Ok(response)
}

/// The route template of a path, so metrics never carry raw paths or ids.
fn route_label(path: &str) -> &'static str {
    match path {
        "/api/detect" => "/api/detect",
        "/api/usage/status" => "/api/usage/status",
        "/api/models" => "/api/models",
        "/api/openapi.json" => "/api/openapi.json",
        "/health" => "/health",
        "/metrics" => "/metrics",
        "/admin/keys" => "/admin/keys",
        "/api/v1/analyses" => "/api/v1/analyses",
        "/api/v1/analyses/url" => "/api/v1/analyses/url",
        "/api/v1/webhooks/secret" => "/api/v1/webhooks/secret",
        p if p.starts_with("/api/v1/analyses/") => "/api/v1/analyses/{id}",
        p if p.starts_with("/admin/keys/") => match p.rsplit('/').next() {
            Some("rotate") => "/admin/keys/{id}/rotate",
            Some("disable") => "/admin/keys/{id}/disable",
            Some("enable") => "/admin/keys/{id}/enable",
            Some("revoke") => "/admin/keys/{id}/revoke",
            Some("tier") => "/admin/keys/{id}/tier",
            _ => "/admin/keys/{id}",
        },
        p if p.starts_with("/docs") => "/docs",
        p if p.starts_with("/studio") => "/studio",
        _ => "other",
    }
}

/// A bound listener and the server state, ready to run.
pub struct Bound {
    acceptor: poem::listener::TcpAcceptor,
    state: Arc<AppState>,
}

impl Bound {
    /// Bind the configured (or given) address.
    pub async fn bind(state: Arc<AppState>, addr: std::net::SocketAddr) -> anyhow::Result<Bound> {
        let acceptor = TcpListener::bind(addr)
            .into_acceptor()
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        Ok(Bound { acceptor, state })
    }

    /// The address actually bound (port 0 resolves here).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.acceptor.local_addr().first().and_then(|a| a.as_socket_addr().copied())
    }

    /// Serve until `shutdown` resolves, then let in-flight requests finish (up to the grace
    /// period) and flush the store.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) -> anyhow::Result<()> {
        let state = self.state;
        let flusher = tokio::spawn(flush_loop(Arc::clone(&state.store)));
        let sweeper = tokio::spawn(sweep_loop(Arc::clone(&state.analyses), state.settings.analyses.clone()));
        let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
        let workers = tokio::spawn(
            Workers {
                analyses: Arc::clone(&state.analyses),
                detector: Arc::clone(&state.detector),
                pool: Arc::clone(&state.pool),
                settings: state.settings.analyses.clone(),
                outcomes: state.metrics.analyses.clone(),
                wakers: state.wakers.clone(),
            }
            .run(workers_stopped.clone()),
        );
        let senders = tokio::spawn(webhooks::run(Arc::clone(&state), workers_stopped));
        let grace = Duration::from_secs(state.settings.server.shutdown_grace_secs);
        let result = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app(Arc::clone(&state)), shutdown, Some(grace))
            .await;
        // workers finish the analysis they hold and senders the delivery they make; the rest
        // stays queued for the next start
        let _ = stop_workers.send(true);
        let _ = workers.await;
        let _ = senders.await;
        flusher.abort();
        sweeper.abort();
        if let Err(e) = state.store.flush().await {
            tracing::error!("final flush of the store failed: {e}");
        }
        result.map_err(Into::into)
    }
}

/// Make the embedded store's counts durable every second (a no-op for Redis).
async fn flush_loop(store: SharedStore) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = store.flush().await {
            tracing::warn!("store flush failed: {e}");
        }
    }
}

/// Enforce analysis retention: every minute, drop images and results older than configured.
async fn sweep_loop(analyses: SharedAnalyses, settings: crate::config::AnalysesSettings) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let now = chrono::Utc::now();
        let images = now - chrono::Duration::seconds(settings.keep_images_secs as i64);
        let records = now - chrono::Duration::seconds(settings.keep_results_secs as i64);
        match analyses.sweep_analyses(images, records).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("retention: {n} analyses deleted"),
            Err(e) => tracing::warn!("retention sweep failed: {e}"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
