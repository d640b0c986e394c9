//! Prometheus metrics (OpenMetrics text at `GET /metrics`): requests by route, status and
//! source; detection latency per module; time spent in auth + quota; quota decisions and
//! store errors; queue depth; result-cache hits; argon2 verifications and wrong-secret flood
//! refusals; analyses queued, processing, completed and failed; webhook attempts and failures.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::analyses::Outcomes;

/// Labels of the request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template (`/api/detect`), never the raw path.
    pub route: String,
    /// The HTTP status.
    pub status: u16,
    /// `api`, `extension`, `extension-local`, `website`, or `none` before a key was verified.
    pub source: String,
}

/// Labels of the per-module latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModuleLabels {
    /// Module name, or `total` for the whole detection.
    pub module: String,
}

/// Labels of the quota decision counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `allow`, `deny` or `store_error`.
    pub decision: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn auth_quota_histogram() -> Histogram {
    // 20 µs … ~0.65 s: the design's bar is 0.3 ms at p50, so the low end needs resolution
    Histogram::new(exponential_buckets(0.00002, 2.0, 16))
}

/// Every metric of the service, registered once.
pub struct Metrics {
    registry: Registry,
    /// Requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Detection latency in seconds, per module and in total.
    pub detection_seconds: HistogramFamily<ModuleLabels>,
    /// Seconds spent authenticating and admitting a request.
    pub auth_quota_seconds: Histogram,
    /// Quota decisions.
    pub quota_decisions: Family<DecisionLabels, Counter>,
    /// Detections waiting for a thread.
    pub queue_depth: Gauge,
    /// Detections running.
    pub detections_running: Gauge,
    /// Requests shed with 503 because the pool was full.
    pub overloaded: Counter,
    /// Reports served from the result cache.
    pub cache_hits: Counter,
    /// Analyses accepted (one per file).
    pub analyses_submitted: Counter,
    /// Analyses waiting for a worker, in the whole queue (set when scraped).
    pub analyses_queued: Gauge,
    /// Analyses claimed by a worker, in the whole queue (set when scraped).
    pub analyses_processing: Gauge,
    /// Analyses this replica completed or failed.
    pub analyses: Outcomes,
    /// Webhook delivery attempts made by this replica.
    pub webhook_attempts: Counter,
    /// Attempts that did not get a 2xx answer.
    pub webhook_failures: Counter,
}

impl Metrics {
    /// Register the metrics; `argon2_runs` and `flood_refusals` are the key service's own
    /// counters.
    pub fn new(argon2_runs: Counter, flood_refusals: Counter) -> Metrics {
        let mut registry = Registry::with_prefix("tellscan");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, status and source",
            requests.clone(),
        );
        let detection_seconds: HistogramFamily<ModuleLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "detection_seconds",
            "Detection latency per forensic module (module=\"total\" for the whole detection)",
            detection_seconds.clone(),
        );
        let auth_quota_seconds = auth_quota_histogram();
        registry.register(
            "auth_quota_seconds",
            "Time spent verifying the API key and admitting the request against its quotas",
            auth_quota_seconds.clone(),
        );
        let quota_decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "quota_decisions",
            "Quota decisions: allow, deny, and store_error (store unreachable)",
            quota_decisions.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Detections waiting for a thread", queue_depth.clone());
        let detections_running = Gauge::default();
        registry.register("detections_running", "Detections running now", detections_running.clone());
        let overloaded = Counter::default();
        registry.register(
            "overloaded",
            "Requests shed with 503 because the detection pool or the upload budget was full",
            overloaded.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "result_cache_hits",
            "Detections answered from the result cache",
            cache_hits.clone(),
        );
        let analyses_submitted = Counter::default();
        registry.register(
            "analyses_submitted",
            "Analyses accepted (one per file)",
            analyses_submitted.clone(),
        );
        let analyses_queued = Gauge::default();
        registry.register(
            "analyses_queued",
            "Analyses waiting for a worker, across every replica sharing the store",
            analyses_queued.clone(),
        );
        let analyses_processing = Gauge::default();
        registry.register(
            "analyses_processing",
            "Analyses being worked on, across every replica sharing the store",
            analyses_processing.clone(),
        );
        let analyses = Outcomes::default();
        registry.register(
            "analyses_completed",
            "Analyses completed by this replica",
            analyses.completed.clone(),
        );
        registry.register("analyses_failed", "Analyses failed by this replica", analyses.failed.clone());
        registry.register(
            "analysis_detection_seconds",
            "Detection time of asynchronous analyses (on a detection thread)",
            analyses.detection_seconds.clone(),
        );
        let webhook_attempts = Counter::default();
        registry.register("webhook_attempts", "Webhook delivery attempts", webhook_attempts.clone());
        let webhook_failures = Counter::default();
        registry.register(
            "webhook_failures",
            "Webhook delivery attempts without a 2xx answer (refused address, timeout, error status)",
            webhook_failures.clone(),
        );
        registry.register(
            "argon2_verifications",
            "argon2id verifications run (once per key per cache period)",
            argon2_runs,
        );
        registry.register(
            "auth_flood_refusals",
            "Keys refused without argon2 because their id had used up its wrong secrets for the window",
            flood_refusals,
        );
        Metrics {
            registry,
            requests,
            detection_seconds,
            auth_quota_seconds,
            quota_decisions,
            queue_depth,
            detections_running,
            overloaded,
            cache_hits,
            analyses_submitted,
            analyses_queued,
            analyses_processing,
            analyses,
            webhook_attempts,
            webhook_failures,
        }
    }

    /// Count one request.
    pub fn request(&self, route: &str, status: u16, source: &str) {
        self.requests
            .get_or_create(&RequestLabels { route: route.to_string(), status, source: source.to_string() })
            .inc();
    }

    /// Count one quota decision.
    pub fn decision(&self, decision: &str) {
        self.quota_decisions.get_or_create(&DecisionLabels { decision: decision.to_string() }).inc();
    }

    /// Record one module's latency in milliseconds.
    pub fn module_latency(&self, module: &str, elapsed_ms: f64) {
        self.detection_seconds
            .get_or_create(&ModuleLabels { module: module.to_string() })
            .observe(elapsed_ms / 1000.0);
    }

    /// The OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // writing to a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
