//! Where keys and quota counters live: one trait, two backends.
//!
//! - [`embedded::EmbeddedStore`]: a redb file in the data directory, the default, for one
//!   process; counts survive restarts.
//! - [`redis::RedisStore`]: Redis through deadpool-redis, for several replicas; admission is
//!   one Lua script.
//!
//! Both are checked by the same conformance suite (`tests/store_conformance.rs`). The names
//! of counters, which windows a request touches and when they expire are decided here, so
//! the backends only store and count.

pub mod analyses;
pub mod embedded;
mod embedded_analyses;
pub mod redis;
mod redis_analyses;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::auth::key::{AccountId, KeyId, KeyRecord};
use crate::quota::{Source, SourceCounts, TierLimits, Window, WindowKind, Windows};

/// How long a counter outlives its window, so a refund that arrives just after the window
/// ended still finds it (and clocks of replicas may differ by a little).
pub const COUNTER_GRACE_SECS: i64 = 120;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or timed out.
    #[error("quota store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with something this version cannot read.
    #[error("quota store returned unreadable data: {0}")]
    Corrupt(String),
    /// Another process holds the embedded store.
    #[error("{0}")]
    Locked(String),
}

/// The result of an admission attempt: whether all three windows had room, and the counts
/// after it (minute, day, month).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Admitted and counted.
    pub admitted: bool,
    /// Counts of the three windows after the attempt.
    pub counts: [u64; 3],
}

/// Current counts of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Minute, day, month.
    pub counts: [u64; 3],
    /// Counts per detection source for the current day and month.
    pub sources: SourceCounts,
}

/// Keys and quota counters, shared by every request and replica.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `embedded` or `redis`.
    fn kind(&self) -> &'static str;
    /// Check that the backend answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Insert or replace a key record.
    async fn put_key(&self, record: &KeyRecord) -> Result<(), StoreError>;
    /// Record that a key was used at `at`. Kept apart from the record, so that noting a use
    /// can never overwrite a concurrent change of state, tier or secret.
    async fn touch_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Look a key up by id (with its last use).
    async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError>;
    /// Every key, in id order.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Count one request of `source` in all three `windows` if every one of them is below its
    /// limit, atomically; a denied request changes nothing.
    async fn admit(
        &self,
        key: &KeyId,
        limits: &TierLimits,
        source: Source,
        windows: &Windows,
    ) -> Result<Admission, StoreError>;
    /// Take back one admitted request (the server failed it), in the windows it was counted in.
    async fn refund(&self, key: &KeyId, source: Source, windows: &Windows) -> Result<(), StoreError>;
    /// Current counts, without counting anything.
    async fn usage(&self, key: &KeyId, windows: &Windows) -> Result<Usage, StoreError>;
    /// Store the webhook secret of `account`, replacing the one before. Kept as given (not
    /// hashed): deliveries are signed with it.
    async fn put_webhook_secret(&self, account: &AccountId, secret: &str) -> Result<(), StoreError>;
    /// The webhook secret of `account`, if one was created.
    async fn webhook_secret(&self, account: &AccountId) -> Result<Option<String>, StoreError>;
    /// Make everything written so far durable (a no-op where every write already is).
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// Name of the counter of `key` in `window`: `<key>:<tag>:<window id>`.
pub fn counter_name(key: &KeyId, window: &Window) -> String {
    format!("{key}:{}:{}", window.kind.tag(), window.id)
}

/// Name of the per-source counter of `key` in a day or month window.
pub fn source_counter_name(key: &KeyId, window: &Window, source: Source) -> String {
    format!("{key}:src:{}:{}:{}", window.kind.tag(), window.id, source.name())
}

/// When a counter of `window` may be forgotten.
pub fn expires_at(window: &Window) -> DateTime<Utc> {
    window.ends_at + chrono::Duration::seconds(COUNTER_GRACE_SECS)
}

/// The day and month windows, the ones sources are counted in.
pub fn source_windows(windows: &Windows) -> impl Iterator<Item = &Window> {
    windows.windows.iter().filter(|w| w.kind != WindowKind::Minute)
}
