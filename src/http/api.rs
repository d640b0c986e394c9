//! The public API: detection, usage, models and health, as poem-openapi operations. The
//! handlers are thin: the detector does the work, the gate does the counting.

use std::sync::Arc;
use std::time::Instant;

use poem::web::Data;
use poem_openapi::auth::ApiKey as ApiKeyHeader;
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use poem_openapi::types::Binary;
use poem_openapi::{ApiResponse, Enum, Multipart, Object, OpenApi, SecurityScheme, Tags};
use sha2::{Digest, Sha256};

use super::declared::{Declared, ModelText};
use super::errors::ApiError;
use super::guard::{keyed, AuthElapsed, QuotaSlot};
use super::report_schema::ReportJson;
use super::{admission, AppState};
use crate::auth::Principal;
use crate::forensics::families::FAMILIES;
use crate::forensics::weights::Fingerprint;
use crate::forensics::{DecodeError, DetectOptions};
use crate::quota::{Source, WindowState};

/// Operation groups of the spec.
#[derive(Tags)]
pub enum ApiTags {
    /// Image analysis.
    Detection,
    /// Quota usage of the calling key.
    Usage,
    /// Service information.
    Service,
    /// Key management (admin token).
    Admin,
}

/// The caller's API key, `imag_<id>_<secret>`, in the `x-api-key` header.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "x-api-key", key_in = "header")]
pub struct ApiKeyAuth(#[allow(dead_code)] ApiKeyHeader);

/// Accepted values of `x-detection-source` (absent means a direct API call).
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "kebab-case")]
pub enum DetectionSource {
    /// The browser extension.
    Extension,
    /// The browser extension's local mode.
    ExtensionLocal,
    /// The website / Studio.
    Website,
}

/// The multipart form of `POST /api/detect` (an unknown part is 400).
#[derive(Debug, Multipart)]
#[oai(deny_unknown_fields)]
pub struct DetectForm {
    /// The image: JPEG, PNG, WebP, HEIC/HEIF or AVIF (decided by its bytes), at most 10 MiB.
    pub file: Binary<Vec<u8>>,
    /// Optional generator slug (`GET /api/models`); the report then carries `model.score`.
    pub model: Option<Declared<ModelText>>,
}

/// A successful detection.
#[derive(ApiResponse)]
pub enum DetectResponse {
    /// The detection report.
    #[oai(status = 200)]
    Ok(Json<ReportJson>),
}

/// One quota window of the calling key.
#[derive(Debug, Object)]
pub struct WindowUsage {
    /// The tier's limit.
    pub limit: u64,
    /// Requests counted so far.
    pub used: u64,
    /// Requests left.
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset: u64,
}

impl From<WindowState> for WindowUsage {
    fn from(w: WindowState) -> Self {
        WindowUsage { limit: w.limit, used: w.used, remaining: w.remaining(), reset: w.reset_secs }
    }
}

/// The three windows.
#[derive(Debug, Object)]
pub struct Windows {
    /// The current UTC minute.
    pub minute: WindowUsage,
    /// The current UTC day.
    pub day: WindowUsage,
    /// The current UTC month.
    pub month: WindowUsage,
}

/// Requests per detection source.
#[derive(Debug, Object)]
pub struct SourceUsage {
    /// Current UTC day, by source (`api`, `extension`, `extension-local`, `website`).
    pub day: std::collections::BTreeMap<String, u64>,
    /// Current UTC month, by source.
    pub month: std::collections::BTreeMap<String, u64>,
}

/// `GET /api/usage/status`.
#[derive(Debug, Object)]
pub struct UsageStatus {
    /// The key's public id.
    pub key_id: String,
    /// The key's tier.
    pub tier: String,
    /// Limit, use and reset per window.
    pub windows: Windows,
    /// Counts per detection source.
    pub sources: SourceUsage,
}

/// A generator family.
#[derive(Debug, Object)]
pub struct ModelInfo {
    /// The slug accepted in `model=`.
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// `GET /api/models`.
#[derive(Debug, Object)]
pub struct ModelList {
    /// Known generator families.
    pub models: Vec<ModelInfo>,
}

/// Store connectivity in `GET /health`.
#[derive(Debug, Object)]
pub struct StoreHealth {
    /// `embedded` or `redis`.
    pub kind: String,
    /// Whether the store answered.
    pub connected: bool,
}

/// `GET /health`.
#[derive(Debug, Object)]
pub struct Health {
    /// `ok`, or `degraded` when the store is unreachable.
    pub status: String,
    /// Service version.
    pub version: String,
    /// Store connectivity.
    pub store: StoreHealth,
    /// Whether the `ml` module's weights are loaded.
    pub model_loaded: bool,
    /// Forensic modules the detector runs.
    pub modules: Vec<String>,
    /// The model and fusion in use.
    pub weights: WeightsHealth,
}

/// One weights file in `GET /health`.
#[derive(Debug, Object)]
pub struct WeightsFile {
    /// `built-in` (compiled into the binary) or the file's path.
    pub source: String,
    /// Lower-case hex SHA-256 of the bytes loaded.
    pub sha256: String,
}

impl From<&Fingerprint> for WeightsFile {
    fn from(f: &Fingerprint) -> Self {
        WeightsFile { source: f.source.to_string(), sha256: f.sha256.clone() }
    }
}

/// The model and fusion in `GET /health`.
#[derive(Debug, Object)]
pub struct WeightsHealth {
    /// The `ml` module's weights; null when the module does not run.
    #[oai(nullable)]
    pub model: Option<WeightsFile>,
    /// The calibrated fusion; null for the uncalibrated v1 weights.
    #[oai(nullable)]
    pub fusion: Option<WeightsFile>,
}

/// Health answers.
#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Everything answers, or the store is down but the service fails open.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The store is down and the service fails closed.
    #[oai(status = 503)]
    Unavailable(Json<Health>),
}

/// The public API.
pub struct PublicApi;

#[OpenApi]
impl PublicApi {
    /// Analyse one image.
    ///
    /// Multipart form with a `file` (JPEG, PNG, WebP, HEIC/HEIF or AVIF by magic bytes, at
    /// most 10 MiB) and an optional `model` slug. Counts one request against every quota window
    /// of the key; the answer carries the quota headers.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/detect",
        method = "post",
        tag = "ApiTags::Detection",
        transform = "keyed",
        operation_id = "detect"
    )]
    async fn detect(
        &self,
        #[oai(name = "x-detection-source")] _source_header: Header<Option<DetectionSource>>,
        _auth: ApiKeyAuth,
        state: Data<&Arc<AppState>>,
        principal: Data<&Principal>,
        source: Data<&Source>,
        slot: Data<&QuotaSlot>,
        auth_elapsed: Data<&AuthElapsed>,
        form: DetectForm,
    ) -> Result<DetectResponse, ApiError> {
        let model = admission::parse_model(form.model.as_ref())?;
        let bytes = form.file.0;
        admission::check_image(&bytes, state.settings.server.max_upload_bytes)?;
        let options = DetectOptions { from_extension: source.is_extension() };
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        // a cached report needs no detection thread, so it is never shed
        let cached = state.cache.get(&digest, options);
        let reservation = if cached.is_some() {
            None
        } else if let Some(r) = state.pool.try_reserve() {
            Some(r)
        } else {
            // a client whose quota is used up hears 429 (with its real Retry-After), not 503
            if let Ok((q, _)) = state.quota.usage(&principal).await {
                if !q.admitted {
                    return Err(admission::denied(&state, &slot, q));
                }
            }
            state.metrics.overloaded.inc();
            return Err(ApiError::unavailable("overloaded", "the server is at capacity; retry shortly", 1));
        };
        let quota_started = Instant::now();
        let admitted = admission::admit(&state, &principal, **source, &slot).await;
        state.metrics.auth_quota_seconds.observe((auth_elapsed.0 .0 + quota_started.elapsed()).as_secs_f64());
        let ticket = admitted?;
        let report = match (cached, reservation) {
            (Some(hit), _) => {
                state.metrics.cache_hits.inc();
                let mut report = (*hit).clone();
                report.cached = true;
                report
            }
            (None, None) => return Err(ApiError::internal("no detection slot was reserved")),
            (None, Some(reservation)) => {
                let detector = Arc::clone(&state.detector);
                let outcome =
                    state.pool.run(reservation, move || detector.detect_with(&bytes, options)).await;
                match outcome {
                    Err(e) => {
                        state.quota.refund(&ticket).await;
                        tracing::error!(key_id = %principal.key_id, "{e}");
                        return Err(ApiError::internal(
                            "the analysis failed on the server; it was not counted",
                        ));
                    }
                    Ok(Err(e)) => return Err(decode_error(e)),
                    Ok(Ok(report)) => {
                        state.metrics.module_latency("total", report.elapsed_ms);
                        for (name, module) in &report.modules {
                            state.metrics.module_latency(name, module.elapsed_ms);
                        }
                        state.cache.put(digest, options, Arc::new(report.clone()));
                        report
                    }
                }
            }
        };
        let mut report = report;
        report.model = model.map(|m| m.score(&report));
        Ok(DetectResponse::Ok(Json(ReportJson(report))))
    }

    /// Quota usage of the calling key.
    ///
    /// Limit, use, remaining and reset of the minute, day and month windows, and counts per
    /// detection source for the current day and month. Consumes no quota.
    #[oai(path = "/api/usage/status", method = "get", tag = "ApiTags::Usage", transform = "keyed")]
    async fn usage_status(
        &self,
        _auth: ApiKeyAuth,
        state: Data<&Arc<AppState>>,
        principal: Data<&Principal>,
        slot: Data<&QuotaSlot>,
    ) -> Result<Json<UsageStatus>, ApiError> {
        let (quota, sources) = state
            .quota
            .usage(&principal)
            .await
            .map_err(|e| admission::gate_error(e, "the quota store cannot be reached; retry shortly"))?;
        slot.set(quota.clone());
        let [minute, day, month] = quota.windows;
        Ok(Json(UsageStatus {
            key_id: principal.key_id.to_string(),
            tier: principal.tier.to_string(),
            windows: Windows { minute: minute.into(), day: day.into(), month: month.into() },
            sources: SourceUsage { day: sources.day, month: sources.month },
        }))
    }

    /// Known generator families, for the `model` field of `POST /api/detect`.
    #[oai(path = "/api/models", method = "get", tag = "ApiTags::Service")]
    async fn models(&self) -> Json<ModelList> {
        Json(ModelList {
            models: FAMILIES.iter().map(|f| ModelInfo { slug: f.slug.into(), name: f.name.into() }).collect(),
        })
    }

    /// Service health: version, store connectivity, the model and fusion in use (SHA-256). No
    /// key needed.
    #[oai(path = "/health", method = "get", tag = "ApiTags::Service")]
    async fn health(&self, state: Data<&Arc<AppState>>) -> HealthResponse {
        let connected = state.store.ping().await.is_ok();
        let weights = state.detector.weights();
        let health = Health {
            status: if connected { "ok" } else { "degraded" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            store: StoreHealth { kind: state.store.kind().into(), connected },
            model_loaded: state.detector.has_ml(),
            modules: state.detector.module_names().iter().map(|m| m.to_string()).collect(),
            weights: WeightsHealth {
                model: weights.model.as_ref().map(WeightsFile::from),
                fusion: weights.fusion.as_ref().map(WeightsFile::from),
            },
        };
        if !connected && state.settings.quota.on_store_error == crate::config::OnStoreError::Deny {
            HealthResponse::Unavailable(Json(health))
        } else {
            HealthResponse::Ok(Json(health))
        }
    }
}

fn decode_error(e: DecodeError) -> ApiError {
    match e {
        DecodeError::UnsupportedMedia => ApiError::unsupported(e.to_string()),
        DecodeError::TooLarge { .. } => ApiError::unprocessable(e.code(), e.to_string()),
        DecodeError::Corrupt(_) => ApiError::unprocessable(e.code(), e.to_string()),
    }
}
