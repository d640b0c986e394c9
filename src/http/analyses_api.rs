//! Asynchronous analyses over HTTP: submit (one or several files), poll, delete. The same
//! validation, size limit, sniffing, quotas and error shape as `POST /api/detect`; the work
//! is done by the analysis workers (`crate::analyses::worker`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Multipart, Object, OpenApi, Union};

use super::api::{ApiKeyAuth, ApiTags};
use super::declared::{AnalysisIdText, Declared, ExternalIdText, ModelText, Uploads, UrlText};
use super::errors::{ApiError, ErrorBody};
use super::guard::{keyed, QuotaSlot};
use super::report_schema::ReportJson;
use super::{admission, AppState};
use crate::analyses::{AnalysisId, AnalysisRecord, AnalysisStatus};
use crate::auth::Principal;
use crate::forensics::families::ModelSlug;
use crate::forensics::ImageFormat;
use crate::hexid::random_hex;
use crate::outbound::client::FetchError;
use crate::quota::{Source, Ticket};

/// `POST /api/v1/analyses` (an unknown part is 400).
#[derive(Debug, Multipart)]
#[oai(deny_unknown_fields)]
pub struct SubmitForm {
    /// One or more images (repeat the field for a batch): JPEG, PNG, WebP, HEIC/HEIF or AVIF,
    /// each at most 10 MiB, together within the request limit.
    pub file: Uploads,
    /// Optional generator slug (`GET /api/models`).
    pub model: Option<Declared<ModelText>>,
    /// Your own reference for the analysis, returned as given (≤ 128 printable characters).
    pub external_id: Option<Declared<ExternalIdText>>,
    /// Where to POST the result when the analysis finishes (`http`/`https`, public address;
    /// the account needs a webhook secret: `POST /api/v1/webhooks/secret`, else 409).
    pub callback_url: Option<Declared<UrlText>>,
}

/// `POST /api/v1/analyses/url`.
#[derive(Debug, Object)]
pub struct SubmitUrl {
    /// `http` or `https` URL of the image.
    pub url: Declared<UrlText>,
    /// Optional generator slug.
    #[oai(nullable)]
    pub model: Option<Declared<ModelText>>,
    /// Your reference (≤ 128 printable characters).
    #[oai(nullable)]
    pub external_id: Option<Declared<ExternalIdText>>,
    /// Where to POST the result when the analysis finishes (the account needs a webhook
    /// secret, else 409).
    #[oai(nullable)]
    pub callback_url: Option<Declared<UrlText>>,
}

/// A submitted or polled analysis.
#[derive(Debug, Object)]
pub struct AnalysisView {
    /// The analysis id.
    pub id: String,
    /// `processing`, `completed` or `failed`.
    pub status: String,
    /// The uploaded file's name; null when the upload had none.
    #[oai(nullable)]
    pub file_name: Option<String>,
    /// MIME type decided from the bytes.
    pub file_type: String,
    /// Your reference; null without one.
    #[oai(nullable)]
    pub external_id: Option<String>,
    /// Submission time (RFC 3339).
    pub created_at: String,
    /// Completion time (RFC 3339); null until finished.
    #[oai(nullable)]
    pub completed_at: Option<String>,
    /// Seconds until completion is expected (submission answers only).
    #[oai(skip_serializing_if_is_none)]
    pub estimated_completion_seconds: Option<u64>,
    /// The result; null unless completed.
    #[oai(nullable)]
    pub result: Option<AnalysisResult>,
    /// Why it failed; null unless failed.
    #[oai(nullable)]
    pub error: Option<ErrorBody>,
    /// Webhook deliveries, when a `callback_url` was given (absent from the webhook's own
    /// body, which is the same on every attempt).
    #[oai(skip_serializing_if_is_none)]
    pub webhook: Option<WebhookView>,
}

/// The webhook of an analysis.
#[derive(Debug, Object)]
pub struct WebhookView {
    /// Where the result is sent.
    pub callback_url: String,
    /// `pending` (not finished, or a retry is due), `delivered` (a 2xx answer) or `failed`
    /// (every attempt failed).
    pub status: String,
    /// Every attempt so far, oldest first.
    pub deliveries: Vec<DeliveryView>,
}

/// One webhook delivery attempt.
#[derive(Debug, Object)]
pub struct DeliveryView {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it was made (RFC 3339).
    pub at: String,
    /// The receiver's HTTP status; null when it did not answer.
    #[oai(nullable)]
    pub status: Option<u16>,
    /// Why it failed; null when it did not.
    #[oai(nullable)]
    pub error: Option<String>,
}

/// A new webhook secret.
#[derive(Debug, Object)]
pub struct WebhookSecret {
    /// The secret (`whsec_` and 64 hex digits). It is shown only here: store it now. Verify
    /// `X-Tellscan-Signature: t=<unix>,v1=<hex>` as HMAC-SHA256 of `"<t>.<body>"` with it.
    pub secret: String,
    /// The account it signs for.
    pub account_id: String,
    /// When it was created (RFC 3339). It replaced any earlier secret at once.
    pub created_at: String,
}

/// `POST /api/v1/webhooks/secret` answers.
#[derive(ApiResponse)]
pub enum SecretCreated {
    /// Created; earlier secrets no longer sign deliveries.
    #[oai(status = 201)]
    Created(Json<WebhookSecret>),
}

/// One signal of `detection_details`.
#[derive(Debug, Object)]
pub struct DetectionDetail {
    /// The module or signal.
    pub signal_type: String,
    /// 0-100.
    pub confidence: f64,
    /// What was seen.
    pub description: String,
}

/// The result of a completed analysis.
#[derive(Debug, Object)]
pub struct AnalysisResult {
    /// Whether the score is at least 60 (`Likely AI generated` or `AI generated`).
    pub is_ai_generated: bool,
    /// The score, 0-100.
    pub confidence_score: f64,
    /// `low` (< 40), `medium` (< 60), `high` (< 85) or `critical`.
    pub risk_level: String,
    /// Signals behind the score.
    pub detection_details: Vec<DetectionDetail>,
    /// Creator, dates, camera, software and dimensions read from the file.
    pub file_metadata: serde_json::Value,
    /// The full detection report, as `POST /api/detect` answers it.
    pub report: ReportJson,
}

/// Several analyses submitted at once.
#[derive(Debug, Object)]
pub struct AnalysisBatch {
    /// One entry per file, in the order of the form.
    pub analyses: Vec<AnalysisView>,
}

/// `DELETE` answer.
#[derive(Debug, Object)]
pub struct Deleted {
    /// The analysis id.
    pub id: String,
    /// Always true.
    pub deleted: bool,
}

/// A submission's body: one analysis for one file, `analyses` for several.
#[derive(Debug, Union)]
pub enum SubmittedBody {
    /// One file: its analysis.
    One(Box<AnalysisView>),
    /// Several files: one analysis each.
    Batch(AnalysisBatch),
}

/// Submission answers.
#[derive(ApiResponse)]
pub enum Submitted {
    /// Accepted: the analysis of one file, or `analyses` with one per file.
    #[oai(status = 202)]
    Accepted(Json<SubmittedBody>),
}

/// The analyses API.
pub struct AnalysesApi;

#[OpenApi(tag = "ApiTags::Detection")]
impl AnalysesApi {
    /// Submit one or more images for asynchronous analysis.
    ///
    /// Answers 202 at once with an id per file; poll `GET /api/v1/analyses/{id}`. Each file
    /// counts one request against the key's quotas; a batch is admitted whole or not at all.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/api/v1/analyses", method = "post", transform = "keyed", operation_id = "submit_analyses")]
    async fn submit(
        &self,
        _auth: ApiKeyAuth,
        state: Data<&Arc<AppState>>,
        principal: Data<&Principal>,
        source: Data<&Source>,
        slot: Data<&QuotaSlot>,
        form: SubmitForm,
    ) -> Result<Submitted, ApiError> {
        let model = admission::parse_model(form.model.as_ref())?;
        let external_id = form.external_id.map(|e| check_external_id(e.text)).transpose()?;
        let callback_url = check_callback(&state, &principal, form.callback_url).await?;
        let max = state.settings.server.max_upload_bytes;
        let mut files = Vec::with_capacity(form.file.0.len());
        for upload in form.file.0 {
            if upload.size() as u64 > max {
                return Err(ApiError::too_large(max));
            }
            let name = upload.file_name().map(|n| n.chars().take(255).collect::<String>());
            let bytes =
                upload.into_vec().await.map_err(|e| ApiError::bad_request("bad_request", e.to_string()))?;
            let format = admission::check_image(&bytes, max)?;
            files.push((name, format, bytes));
        }
        let request = Submission { model, external_id, callback_url };
        let views = queue_files(&state, &principal, **source, &slot, files, request).await?;
        Ok(submitted(views))
    }

    /// Submit an image by URL for asynchronous analysis.
    ///
    /// Only `http` and `https`; the host and every redirect must resolve to public addresses
    /// (or networks the operator allowed), the download is bounded in size and time, and the
    /// bytes are sniffed like an upload.
    #[oai(
        path = "/api/v1/analyses/url",
        method = "post",
        transform = "keyed",
        operation_id = "submit_analysis_url"
    )]
    async fn submit_url(
        &self,
        _auth: ApiKeyAuth,
        state: Data<&Arc<AppState>>,
        principal: Data<&Principal>,
        source: Data<&Source>,
        slot: Data<&QuotaSlot>,
        body: Json<SubmitUrl>,
    ) -> Result<Submitted, ApiError> {
        let body = body.0;
        let model = admission::parse_model(body.model.as_ref())?;
        let external_id = body.external_id.map(|e| check_external_id(e.text)).transpose()?;
        let callback_url = check_callback(&state, &principal, body.callback_url).await?;
        let url = state.outbound.check(body.url.as_str()).map_err(fetch_error)?;
        let max = state.settings.server.max_upload_bytes;
        let fetched = state.outbound.fetch(url.as_str(), max).await.map_err(fetch_error)?;
        let format = admission::check_image(&fetched.bytes, max)?;
        let name = fetched
            .final_url
            .path_segments()
            .and_then(|mut s| s.next_back().map(str::to_string))
            .filter(|n| !n.is_empty())
            .map(|n| n.chars().take(255).collect());
        let files = vec![(name, format, fetched.bytes)];
        let request = Submission { model, external_id, callback_url };
        let views = queue_files(&state, &principal, **source, &slot, files, request).await?;
        Ok(submitted(views))
    }

    /// Poll an analysis.
    ///
    /// 400 for a malformed id, 404 for an unknown one, 403 when it belongs to another account.
    #[oai(path = "/api/v1/analyses/:id", method = "get", transform = "keyed", operation_id = "get_analysis")]
    async fn get(
        &self,
        _auth: ApiKeyAuth,
        state: Data<&Arc<AppState>>,
        principal: Data<&Principal>,
        id: Path<Declared<AnalysisIdText>>,
    ) -> Result<Json<AnalysisView>, ApiError> {
        let record = owned(&state, &principal, &id).await?;
        Ok(Json(view_of(&record, state.settings.analyses.webhook_attempts)))
    }

    /// Delete an analysis: its image, its result and any cached report, at once.
    #[oai(
        path = "/api/v1/analyses/:id",
        method = "delete",
        transform = "keyed",
        operation_id = "delete_analysis"
    )]
    async fn delete(
        &self,
        _auth: ApiKeyAuth,
        state: Data<&Arc<AppState>>,
        principal: Data<&Principal>,
        id: Path<Declared<AnalysisIdText>>,
    ) -> Result<Json<Deleted>, ApiError> {
        let record = owned(&state, &principal, &id).await?;
        state.analyses.delete_analysis(&record.id).await.map_err(|_| analysis_store_down())?;
        if let Some(digest) = record.result.as_ref().and_then(|r| hex::decode(&r.hashes.sha256).ok()) {
            if let Ok(digest) = <[u8; 32]>::try_from(digest.as_slice()) {
                state.cache.remove(&digest);
            }
        }
        Ok(Json(Deleted { id: record.id.to_string(), deleted: true }))
    }

    /// Create the account's webhook secret, or replace it.
    ///
    /// The secret is shown once, in this answer. Webhook deliveries are signed with it from
    /// now on (a delivery already being retried is signed with the new one too). Needed
    /// before any submission with a `callback_url`.
    #[oai(
        path = "/api/v1/webhooks/secret",
        method = "post",
        transform = "keyed",
        operation_id = "create_webhook_secret"
    )]
    async fn create_webhook_secret(
        &self,
        _auth: ApiKeyAuth,
        state: Data<&Arc<AppState>>,
        principal: Data<&Principal>,
    ) -> Result<SecretCreated, ApiError> {
        let secret = format!("{WEBHOOK_SECRET_PREFIX}{}", random_hex(WEBHOOK_SECRET_BYTES));
        state.store.put_webhook_secret(&principal.account, &secret).await.map_err(|e| {
            tracing::warn!("cannot store a webhook secret: {e}");
            analysis_store_down()
        })?;
        Ok(SecretCreated::Created(Json(WebhookSecret {
            secret,
            account_id: principal.account.to_string(),
            created_at: rfc3339(Utc::now()),
        })))
    }
}

/// What every file of one submission shares.
struct Submission {
    model: Option<ModelSlug>,
    external_id: Option<String>,
    callback_url: Option<String>,
}

/// Prefix of webhook secrets, so a leaked one is recognisable.
const WEBHOOK_SECRET_PREFIX: &str = "whsec_";
/// Bytes of randomness in a webhook secret (256 bits).
const WEBHOOK_SECRET_BYTES: usize = 32;

/// A callback URL that passes the outbound address checks, for an account that has a
/// webhook secret to sign with.
async fn check_callback(
    state: &AppState,
    principal: &Principal,
    url: Option<Declared<UrlText>>,
) -> Result<Option<String>, ApiError> {
    let Some(url) = url else {
        return Ok(None);
    };
    let url = state.webhook_client.check(url.as_str()).map_err(|e| match e {
        FetchError::Refused { .. } => ApiError::unprocessable("callback_url_refused", e.to_string()),
        _ => ApiError::unprocessable("invalid_callback_url", e.to_string()),
    })?;
    let secret = state.store.webhook_secret(&principal.account).await.map_err(|_| analysis_store_down())?;
    if secret.is_none() {
        return Err(ApiError::conflict(
            "webhook_secret_missing",
            "this account has no webhook secret to sign deliveries with: create one with \
             POST /api/v1/webhooks/secret (it is shown once), then submit again",
        ));
    }
    Ok(Some(url.to_string()))
}

/// Admit and queue the files of one submission, all or nothing.
async fn queue_files(
    state: &AppState,
    principal: &Principal,
    source: Source,
    slot: &QuotaSlot,
    files: Vec<(Option<String>, ImageFormat, Vec<u8>)>,
    request: Submission,
) -> Result<Vec<AnalysisView>, ApiError> {
    let Submission { model, external_id, callback_url } = request;
    let tickets = admit_all(state, principal, source, files.len(), slot).await?;
    let (queued, claimed) = state.analyses.queue_depth().await.unwrap_or((0, 0));
    let workers = state.settings.analyses.workers.max(1) as f64;
    let pace = state.metrics.analyses.pace.millis() / 1000.0;
    let mut views = Vec::with_capacity(files.len());
    for (name, format, bytes) in files {
        let record = AnalysisRecord {
            id: AnalysisId::generate(),
            account: principal.account.clone(),
            key_id: principal.key_id.clone(),
            status: AnalysisStatus::Processing,
            file_name: name,
            file_type: format.mime().to_string(),
            external_id: external_id.clone(),
            model: model.map(|m| m.family().slug.to_string()),
            source,
            callback_url: callback_url.clone(),
            created_at: Utc::now(),
            completed_at: None,
            result: None,
            error: None,
            attempts: 0,
            deliveries: Vec::new(),
            delivered: false,
        };
        if let Err(e) = state.analyses.submit(&record, &bytes).await {
            // what was not stored is not counted
            for ticket in &tickets[views.len()..] {
                state.quota.refund(ticket).await;
            }
            tracing::warn!("cannot queue an analysis: {e}");
            return Err(analysis_store_down());
        }
        state.metrics.analyses_submitted.inc();
        state.wakers.jobs.notify_one();
        let mut view = view_of(&record, state.settings.analyses.webhook_attempts);
        // the jobs ahead of this one (in the whole queue) shared by this replica's workers, at
        // the recent pace of detections; whole seconds, at least 1
        let ahead = (queued + claimed) as f64 + views.len() as f64;
        view.estimated_completion_seconds = Some(((ahead / workers + 1.0) * pace).ceil().max(1.0) as u64);
        views.push(view);
    }
    Ok(views)
}

fn submitted(mut views: Vec<AnalysisView>) -> Submitted {
    Submitted::Accepted(Json(if views.len() == 1 {
        SubmittedBody::One(Box::new(views.remove(0)))
    } else {
        SubmittedBody::Batch(AnalysisBatch { analyses: views })
    }))
}

fn fetch_error(e: FetchError) -> ApiError {
    match e {
        FetchError::InvalidUrl(_) => ApiError::unprocessable("invalid_url", e.to_string()),
        FetchError::Refused { .. } => ApiError::unprocessable("url_refused", e.to_string()),
        FetchError::TooLarge(limit) => ApiError::too_large(limit),
        FetchError::Timeout | FetchError::Status(_) | FetchError::Network(_) => {
            ApiError::unprocessable("url_unreachable", format!("the image could not be downloaded: {e}"))
        }
    }
}

/// Admit one request per file, all or nothing.
async fn admit_all(
    state: &AppState,
    principal: &Principal,
    source: Source,
    count: usize,
    slot: &QuotaSlot,
) -> Result<Vec<Ticket>, ApiError> {
    let mut tickets = Vec::with_capacity(count);
    for _ in 0..count {
        match admission::admit(state, principal, source, slot).await {
            Ok(ticket) => tickets.push(ticket),
            Err(refused) => {
                for ticket in &tickets {
                    state.quota.refund(ticket).await;
                }
                return Err(refused);
            }
        }
    }
    Ok(tickets)
}

/// The record `id` names, if it belongs to the caller's account.
async fn owned(
    state: &AppState,
    principal: &Principal,
    id: &Declared<AnalysisIdText>,
) -> Result<AnalysisRecord, ApiError> {
    let id = AnalysisId::parse(id.as_str())
        .map_err(|e| ApiError::bad_request("invalid_analysis_id", e.to_string()))?;
    let record = state
        .analyses
        .get_analysis(&id)
        .await
        .map_err(|_| analysis_store_down())?
        .ok_or_else(|| ApiError::not_found("unknown_analysis", format!("no analysis with id {id}")))?;
    if record.account != principal.account {
        return Err(ApiError::forbidden("forbidden", "this analysis belongs to another account"));
    }
    Ok(record)
}

fn analysis_store_down() -> ApiError {
    ApiError::unavailable("store_unavailable", "the analysis store cannot be reached", 5)
}

/// A client's reference: 1-128 characters, no control character (the pattern
/// `declared::ExternalIdText` publishes).
pub(crate) fn check_external_id(value: String) -> Result<String, ApiError> {
    let ok = !value.is_empty() && value.chars().count() <= 128 && value.chars().all(|c| !c.is_control());
    if ok {
        Ok(value)
    } else {
        Err(ApiError::bad_request("invalid_external_id", "external_id is 1-128 printable characters"))
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `low` < 40 ≤ `medium` < 60 ≤ `high` < 85 ≤ `critical`.
pub fn risk_level(score: f64) -> &'static str {
    match score {
        s if s < 40.0 => "low",
        s if s < 60.0 => "medium",
        s if s < 85.0 => "high",
        _ => "critical",
    }
}

/// The poll body of `record`; `webhook_attempts` (the configured maximum) tells a webhook
/// that is still being retried from one that gave up.
pub(super) fn view_of(record: &AnalysisRecord, webhook_attempts: u32) -> AnalysisView {
    let status = match record.status {
        AnalysisStatus::Processing => "processing",
        AnalysisStatus::Completed => "completed",
        AnalysisStatus::Failed => "failed",
    };
    AnalysisView {
        id: record.id.to_string(),
        status: status.into(),
        file_name: record.file_name.clone(),
        file_type: record.file_type.clone(),
        external_id: record.external_id.clone(),
        created_at: rfc3339(record.created_at),
        completed_at: record.completed_at.map(rfc3339),
        estimated_completion_seconds: None,
        result: record.result.as_ref().map(|report| AnalysisResult {
            is_ai_generated: report.score >= 60.0,
            confidence_score: report.score,
            risk_level: risk_level(report.score).into(),
            detection_details: report
                .details
                .iter()
                .map(|d| DetectionDetail {
                    signal_type: d.signal_type.clone(),
                    confidence: d.confidence,
                    description: d.description.clone(),
                })
                .collect(),
            file_metadata: serde_json::to_value(&report.file_metadata).unwrap_or_default(),
            report: ReportJson(report.clone()),
        }),
        error: record.error.as_ref().map(|e| ErrorBody { error: e.error.clone(), detail: e.detail.clone() }),
        webhook: record.callback_url.as_ref().map(|url| webhook_view(record, url, webhook_attempts)),
    }
}

fn webhook_view(record: &AnalysisRecord, url: &str, max_attempts: u32) -> WebhookView {
    let status = if record.delivered {
        "delivered"
    } else if record.deliveries.len() as u64 >= u64::from(max_attempts.max(1)) {
        "failed"
    } else {
        "pending"
    };
    WebhookView {
        callback_url: url.to_string(),
        status: status.into(),
        deliveries: record
            .deliveries
            .iter()
            .map(|d| DeliveryView {
                attempt: d.attempt,
                at: rfc3339(d.at),
                status: d.status,
                error: d.error.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::risk_level;

    #[test]
    fn risk_levels_follow_the_documented_bands() {
        assert_eq!(risk_level(0.0), "low");
        assert_eq!(risk_level(39.9), "low");
        assert_eq!(risk_level(40.0), "medium");
        assert_eq!(risk_level(59.9), "medium");
        assert_eq!(risk_level(60.0), "high");
        assert_eq!(risk_level(84.9), "high");
        assert_eq!(risk_level(85.0), "critical");
        assert_eq!(risk_level(100.0), "critical");
    }
}
