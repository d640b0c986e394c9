//! The store side of asynchronous analyses: records, the images waiting to be analysed, and
//! the work queue with at-least-once delivery.
//!
//! Queue semantics (both stores, checked by `tests/analysis_store_conformance.rs`):
//! - [`AnalysisStore::submit`] stores the record and its image and queues the id, atomically.
//! - [`AnalysisStore::claim`] hands the oldest queued id to one worker (never the same id to
//!   two callers at once) and hides it for `visibility`; a claim not finished by then is
//!   handed out again (the worker is presumed dead), with `attempts` incremented.
//! - [`AnalysisStore::finish`] records the outcome only while the analysis is still
//!   `processing`: the first finisher wins, so a job is never completed twice with
//!   different results, and later finishers learn they lost.
//! - A finished analysis with a `callback_url` has its webhook scheduled in the same step.
//!   [`AnalysisStore::claim_webhook`] hands a due webhook to one sender and pushes it back
//!   by a lease (a sender that dies mid-delivery is replaced after the lease);
//!   [`AnalysisStore::update_deliveries`] records the attempt and schedules the retry or
//!   ends the schedule.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::analyses::{AnalysisId, AnalysisRecord};

/// A claimed job: the record as it was when claimed, and the image to analyse.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The record (status `processing`, `attempts` already incremented for this claim).
    pub record: AnalysisRecord,
    /// The submitted image bytes.
    pub image: Vec<u8>,
}

/// Records, images and the work queue of asynchronous analyses.
#[async_trait]
pub trait AnalysisStore: Send + Sync + 'static {
    /// Store a new record (status `processing`) and its image, and queue it; atomic.
    async fn submit(&self, record: &AnalysisRecord, image: &[u8]) -> Result<(), StoreError>;
    /// A record by id.
    async fn get_analysis(&self, id: &AnalysisId) -> Result<Option<AnalysisRecord>, StoreError>;
    /// Hand the oldest available job to the caller, hidden from other callers until
    /// `now + visibility`. Jobs whose earlier claim expired count as available again.
    /// `None` when there is nothing to do. A queued id whose record or image has been deleted
    /// is dropped from the queue, not returned.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        visibility: chrono::Duration,
    ) -> Result<Option<Claimed>, StoreError>;
    /// Record the outcome (`completed` or `failed`, with result or error and `completed_at`)
    /// if the stored record is still `processing`; remove the job from the queue and, when
    /// `drop_image`, delete the image; when the record has a `callback_url`, schedule its
    /// webhook, due at once. Returns `false`, changing nothing, when another finisher came
    /// first or the analysis was deleted.
    async fn finish(&self, record: &AnalysisRecord, drop_image: bool) -> Result<bool, StoreError>;
    /// The finished analysis whose webhook has been due longest (due at or before `now`),
    /// pushed back to `now + lease` so no other sender takes it meanwhile. A scheduled id
    /// whose record is gone is dropped from the schedule, not returned.
    async fn claim_webhook(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<AnalysisRecord>, StoreError>;
    /// Replace a finished record's webhook bookkeeping (`deliveries`, `delivered`) without
    /// touching its status or result, and schedule the next delivery at `retry_at`, or end
    /// the schedule when `None`. Returns `false` when the record is gone.
    async fn update_deliveries(
        &self,
        record: &AnalysisRecord,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;
    /// Delete the record, its image, its queue entries and its webhook schedule. Returns whether it existed.
    async fn delete_analysis(&self, id: &AnalysisId) -> Result<bool, StoreError>;
    /// Delete the images of finished analyses that finished before `image_before`, and the
    /// whole analyses that finished before `record_before`; returns how many records went.
    async fn sweep_analyses(
        &self,
        image_before: DateTime<Utc>,
        record_before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Jobs waiting (queued, not claimed) and jobs claimed (being processed).
    async fn queue_depth(&self) -> Result<(u64, u64), StoreError>;
}

/// A shared analysis-store handle.
pub type SharedAnalyses = Arc<dyn AnalysisStore>;
