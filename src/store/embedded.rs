//! The embedded store: one redb file (`<data-dir>/tellscan.redb`) with a key table and a
//! counter table. One write transaction per admission makes the three windows all-or-nothing.
//!
//! Admissions commit with `Durability::None` (no fsync on the request path: auth + quota must
//! stay well under a millisecond) and [`Store::flush`] makes them durable; the server calls it
//! every second and at shutdown, so a crash loses at most the last second of counts while a
//! restart loses none. Key changes are written durably at once. `flush` also drops counters
//! whose window has ended.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use redb::{Database, DatabaseError, Durability, ReadableTable, TableDefinition};

use super::{
    counter_name, expires_at, source_counter_name, source_windows, Admission, Store, StoreError, Usage,
};
use crate::auth::key::{AccountId, KeyId, KeyRecord};
use crate::quota::{Source, TierLimits, Windows};

/// Key id → JSON record.
const KEYS: TableDefinition<&str, &str> = TableDefinition::new("keys");
/// Key id → unix second of its last verified use (apart from the record: see `touch_key`).
const LAST_USED: TableDefinition<&str, i64> = TableDefinition::new("last_used");
/// Counter name → (count, unix second after which it may be dropped).
const COUNTERS: TableDefinition<&str, (u64, i64)> = TableDefinition::new("counters");
/// Account id → webhook secret.
const WEBHOOK_SECRETS: TableDefinition<&str, &str> = TableDefinition::new("webhook_secrets");
/// Seconds between sweeps of ended windows.
const SWEEP_EVERY_SECS: i64 = 60;

/// File name of the store inside the data directory.
pub const FILE_NAME: &str = "tellscan.redb";

/// The redb-backed store.
pub struct EmbeddedStore {
    pub(super) db: Arc<Database>,
    path: PathBuf,
    pub(super) dirty: Arc<AtomicBool>,
    last_sweep: AtomicI64,
}

impl EmbeddedStore {
    /// Open (or create) the store in `data_dir`, creating the directory when missing.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create data directory {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(format!(
                "the embedded store {} is held by another process (a running `tellscan serve`?)",
                path.display()
            )),
            other => StoreError::Unavailable(format!("cannot open {}: {other}", path.display())),
        })?;
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(KEYS).map_err(db_err)?;
        tx.open_table(COUNTERS).map_err(db_err)?;
        tx.open_table(LAST_USED).map_err(db_err)?;
        tx.open_table(WEBHOOK_SECRETS).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path,
            dirty: Arc::new(AtomicBool::new(false)),
            last_sweep: AtomicI64::new(0),
        })
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run blocking redb work off the async workers.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

pub(super) fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(e.into().to_string())
}

fn decode_record(json: &str, last_used: Option<i64>) -> Result<KeyRecord, StoreError> {
    let mut record: KeyRecord =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("key record: {e}")))?;
    if let Some(t) = last_used.and_then(|t| chrono::DateTime::from_timestamp(t, 0)) {
        record.last_used_at = record.last_used_at.max(Some(t));
    }
    Ok(record)
}

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            tx.open_table(KEYS).map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn put_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let id = record.id.to_string();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(db_err)?;
            tx.open_table(KEYS).map_err(db_err)?.insert(id.as_str(), json.as_str()).map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn touch_key(&self, id: &KeyId, at: chrono::DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.to_string();
        let dirty = Arc::clone(&self.dirty);
        self.blocking(move |db| {
            let mut tx = db.begin_write().map_err(db_err)?;
            // a last-use time may be lost in a crash; it is not worth an fsync per key and period
            tx.set_durability(Durability::None);
            tx.open_table(LAST_USED).map_err(db_err)?.insert(id.as_str(), at.timestamp()).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            dirty.store(true, Ordering::Release);
            Ok(())
        })
        .await
    }

    async fn put_webhook_secret(&self, account: &AccountId, secret: &str) -> Result<(), StoreError> {
        let account = account.to_string();
        let secret = secret.to_string();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(db_err)?;
            tx.open_table(WEBHOOK_SECRETS)
                .map_err(db_err)?
                .insert(account.as_str(), secret.as_str())
                .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn webhook_secret(&self, account: &AccountId) -> Result<Option<String>, StoreError> {
        let account = account.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(WEBHOOK_SECRETS).map_err(db_err)?;
            let found = table.get(account.as_str()).map_err(db_err)?;
            Ok(found.map(|v| v.value().to_string()))
        })
        .await
    }

    async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(KEYS).map_err(db_err)?;
            let used = tx.open_table(LAST_USED).map_err(db_err)?;
            let last = used.get(id.as_str()).map_err(db_err)?.map(|v| v.value());
            let found = table.get(id.as_str()).map_err(db_err)?;
            found.map(|v| decode_record(v.value(), last)).transpose()
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(KEYS).map_err(db_err)?;
            let used = tx.open_table(LAST_USED).map_err(db_err)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let last = used.get(k.value()).map_err(db_err)?.map(|t| t.value());
                out.push(decode_record(v.value(), last)?);
            }
            Ok(out)
        })
        .await
    }

    async fn admit(
        &self,
        key: &KeyId,
        limits: &TierLimits,
        source: Source,
        windows: &Windows,
    ) -> Result<Admission, StoreError> {
        let counters: Vec<(String, i64)> =
            windows.windows.iter().map(|w| (counter_name(key, w), expires_at(w).timestamp())).collect();
        let sources: Vec<(String, i64)> = source_windows(windows)
            .map(|w| (source_counter_name(key, w, source), expires_at(w).timestamp()))
            .collect();
        let limits = limits.as_array();
        let dirty = Arc::clone(&self.dirty);
        self.blocking(move |db| {
            let mut tx = db.begin_write().map_err(db_err)?;
            tx.set_durability(Durability::None);
            let admission = {
                let mut table = tx.open_table(COUNTERS).map_err(db_err)?;
                let mut counts = [0u64; 3];
                for (i, (name, _)) in counters.iter().enumerate() {
                    counts[i] = table.get(name.as_str()).map_err(db_err)?.map_or(0, |v| v.value().0);
                }
                let admitted = (0..3).all(|i| counts[i] < limits[i]);
                if admitted {
                    for (i, (name, expiry)) in counters.iter().enumerate() {
                        counts[i] += 1;
                        table.insert(name.as_str(), (counts[i], *expiry)).map_err(db_err)?;
                    }
                    for (name, expiry) in &sources {
                        let n = table.get(name.as_str()).map_err(db_err)?.map_or(0, |v| v.value().0);
                        table.insert(name.as_str(), (n + 1, *expiry)).map_err(db_err)?;
                    }
                }
                Admission { admitted, counts }
            };
            if admission.admitted {
                tx.commit().map_err(db_err)?;
                dirty.store(true, Ordering::Release);
            } else {
                tx.abort().map_err(db_err)?;
            }
            Ok(admission)
        })
        .await
    }

    async fn refund(&self, key: &KeyId, source: Source, windows: &Windows) -> Result<(), StoreError> {
        let names: Vec<String> = windows
            .windows
            .iter()
            .map(|w| counter_name(key, w))
            .chain(source_windows(windows).map(|w| source_counter_name(key, w, source)))
            .collect();
        let dirty = Arc::clone(&self.dirty);
        self.blocking(move |db| {
            let mut tx = db.begin_write().map_err(db_err)?;
            tx.set_durability(Durability::None);
            {
                let mut table = tx.open_table(COUNTERS).map_err(db_err)?;
                for name in &names {
                    let current = table.get(name.as_str()).map_err(db_err)?.map(|v| v.value());
                    if let Some((n, expiry)) = current.filter(|(n, _)| *n > 0) {
                        table.insert(name.as_str(), (n - 1, expiry)).map_err(db_err)?;
                    }
                }
            }
            tx.commit().map_err(db_err)?;
            dirty.store(true, Ordering::Release);
            Ok(())
        })
        .await
    }

    async fn usage(&self, key: &KeyId, windows: &Windows) -> Result<Usage, StoreError> {
        let counters: Vec<String> = windows.windows.iter().map(|w| counter_name(key, w)).collect();
        let sources: Vec<(crate::quota::WindowKind, Source, String)> = source_windows(windows)
            .flat_map(|w| Source::ALL.map(|s| (w.kind, s, source_counter_name(key, w, s))))
            .collect();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(COUNTERS).map_err(db_err)?;
            let read = |name: &str| -> Result<u64, StoreError> {
                Ok(table.get(name).map_err(db_err)?.map_or(0, |v| v.value().0))
            };
            let mut usage = Usage::default();
            for (i, name) in counters.iter().enumerate() {
                usage.counts[i] = read(name)?;
            }
            for (kind, source, name) in &sources {
                let n = read(name)?;
                let bucket = match kind {
                    crate::quota::WindowKind::Day => &mut usage.sources.day,
                    _ => &mut usage.sources.month,
                };
                bucket.insert(source.name().to_string(), n);
            }
            Ok(usage)
        })
        .await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let now = Utc::now().timestamp();
        let sweep = now - self.last_sweep.load(Ordering::Acquire) >= SWEEP_EVERY_SECS;
        if !sweep && !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        if sweep {
            self.last_sweep.store(now, Ordering::Release);
            self.dirty.store(false, Ordering::Release);
        }
        let result = self
            .blocking(move |db| {
                let mut tx = db.begin_write().map_err(db_err)?;
                tx.set_durability(Durability::Immediate);
                if sweep {
                    let mut table = tx.open_table(COUNTERS).map_err(db_err)?;
                    table.retain(|_, (_, expiry)| expiry > now).map_err(db_err)?;
                }
                tx.commit().map_err(db_err)
            })
            .await;
        if result.is_err() {
            // nothing was made durable: the next flush must try again
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}
