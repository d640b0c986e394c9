//! [`AnalysisStore`] for the embedded store: asynchronous analyses in the same redb file as
//! the keys and counters.
//!
//! Tables:
//!
//! - `analyses`: analysis id → JSON of the [`AnalysisRecord`];
//! - `analysis_images`: analysis id → the submitted image, until analysed (or swept);
//! - `analysis_queue`: sequence number → analysis id, the jobs waiting, oldest first (the
//!   next sequence is one past the highest queued, so the order is the order of submission);
//! - `analysis_queued`: analysis id → its sequence number, so a finished or deleted job
//!   leaves the queue without a scan;
//! - `analysis_claims`: analysis id → unix millisecond at which its claim expires;
//! - `analysis_finished`: (unix millisecond it finished, id), the order the retention sweep
//!   deletes whole analyses in;
//! - `analysis_kept_images`: (unix millisecond it finished, id) of finished analyses whose
//!   image is still kept, the order the sweep deletes images in;
//! - `analysis_webhooks`: (unix millisecond due, id) of the webhooks waiting to be sent,
//!   the order senders claim them in;
//! - `analysis_webhook_due`: analysis id → its due time in `analysis_webhooks`.
//!
//! Every operation is one write transaction (redb runs them one at a time), so claim and
//! finish are atomic: a job is never handed to two workers at once, and only the first
//! finisher records an outcome. Unlike admissions, analysis writes commit with
//! `Durability::Immediate`: an accepted job, a claim and an outcome survive a crash.
//!
//! `attempts` belongs to the store: only a claim increments it, and [`AnalysisStore::finish`]
//! and [`AnalysisStore::update_deliveries`] keep the stored count whatever the caller's copy
//! says (a worker whose claim expired holds a stale count).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, TableError, WriteTransaction,
};

use super::analyses::{AnalysisStore, Claimed};
use super::embedded::{db_err, EmbeddedStore};
use super::StoreError;
use crate::analyses::{AnalysisId, AnalysisRecord, AnalysisStatus};

/// Analysis id → JSON record.
const ANALYSES: TableDefinition<&str, &str> = TableDefinition::new("analyses");
/// Analysis id → submitted image.
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("analysis_images");
/// Sequence → analysis id: the waiting jobs in submission order.
const QUEUE: TableDefinition<u64, &str> = TableDefinition::new("analysis_queue");
/// Analysis id → its sequence in [`QUEUE`].
const QUEUED: TableDefinition<&str, u64> = TableDefinition::new("analysis_queued");
/// Analysis id → unix millisecond its claim expires.
const CLAIMS: TableDefinition<&str, i64> = TableDefinition::new("analysis_claims");
/// (Unix millisecond finished, id) of every finished analysis.
const FINISHED: TableDefinition<(i64, &str), ()> = TableDefinition::new("analysis_finished");
/// (Unix millisecond finished, id) of finished analyses that still have their image.
const KEPT_IMAGES: TableDefinition<(i64, &str), ()> = TableDefinition::new("analysis_kept_images");
/// (Unix millisecond due, id) of the webhooks to send.
const WEBHOOKS: TableDefinition<(i64, &str), ()> = TableDefinition::new("analysis_webhooks");
/// Analysis id → its due time in [`WEBHOOKS`].
const WEBHOOK_DUE: TableDefinition<&str, i64> = TableDefinition::new("analysis_webhook_due");

fn encode(record: &AnalysisRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|e| StoreError::Corrupt(format!("analysis record: {e}")))
}

fn decode(json: &str) -> Result<AnalysisRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("analysis record: {e}")))
}

/// When a record finished, in unix milliseconds: its `completed_at`, else `fallback`.
fn finished_millis(record: &AnalysisRecord, fallback: DateTime<Utc>) -> i64 {
    record.completed_at.unwrap_or(fallback).timestamp_millis()
}

/// A table of a read transaction; `None` while nothing has ever been written to it (the
/// analysis tables are created by the first write, not by [`EmbeddedStore::open`]).
fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, StoreError> {
    match tx.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(db_err(e)),
    }
}

/// Every analysis table, opened in one write transaction.
struct Tables<'txn> {
    analyses: Table<'txn, &'static str, &'static str>,
    images: Table<'txn, &'static str, &'static [u8]>,
    queue: Table<'txn, u64, &'static str>,
    queued: Table<'txn, &'static str, u64>,
    claims: Table<'txn, &'static str, i64>,
    finished: Table<'txn, (i64, &'static str), ()>,
    kept: Table<'txn, (i64, &'static str), ()>,
    webhooks: Table<'txn, (i64, &'static str), ()>,
    webhook_due: Table<'txn, &'static str, i64>,
}

impl<'txn> Tables<'txn> {
    fn open(tx: &'txn WriteTransaction) -> Result<Tables<'txn>, StoreError> {
        Ok(Tables {
            analyses: tx.open_table(ANALYSES).map_err(db_err)?,
            images: tx.open_table(IMAGES).map_err(db_err)?,
            queue: tx.open_table(QUEUE).map_err(db_err)?,
            queued: tx.open_table(QUEUED).map_err(db_err)?,
            claims: tx.open_table(CLAIMS).map_err(db_err)?,
            finished: tx.open_table(FINISHED).map_err(db_err)?,
            kept: tx.open_table(KEPT_IMAGES).map_err(db_err)?,
            webhooks: tx.open_table(WEBHOOKS).map_err(db_err)?,
            webhook_due: tx.open_table(WEBHOOK_DUE).map_err(db_err)?,
        })
    }

    fn record_json(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.analyses.get(id).map_err(db_err)?.map(|v| v.value().to_string()))
    }

    /// Take `id` out of the queue; whether it was there.
    fn dequeue(&mut self, id: &str) -> Result<bool, StoreError> {
        let Some(seq) = self.queued.remove(id).map_err(db_err)?.map(|v| v.value()) else {
            return Ok(false);
        };
        self.queue.remove(seq).map_err(db_err)?;
        Ok(true)
    }

    /// Append `id` to the queue.
    fn enqueue(&mut self, id: &str) -> Result<(), StoreError> {
        let seq = self.queue.last().map_err(db_err)?.map_or(0, |(k, _)| k.value() + 1);
        self.queue.insert(seq, id).map_err(db_err)?;
        self.queued.insert(id, seq).map_err(db_err)?;
        Ok(())
    }

    /// Take `id`'s webhook off the schedule; whether it was on it.
    fn unschedule_webhook(&mut self, id: &str) -> Result<bool, StoreError> {
        let Some(due) = self.webhook_due.remove(id).map_err(db_err)?.map(|v| v.value()) else {
            return Ok(false);
        };
        self.webhooks.remove((due, id)).map_err(db_err)?;
        Ok(true)
    }

    /// (Re)schedule `id`'s webhook at `due` (unix milliseconds).
    fn schedule_webhook(&mut self, id: &str, due: i64) -> Result<(), StoreError> {
        self.unschedule_webhook(id)?;
        self.webhooks.insert((due, id), ()).map_err(db_err)?;
        self.webhook_due.insert(id, due).map_err(db_err)?;
        Ok(())
    }

    /// The expired claim with the earliest deadline, if any. Claims are as many as jobs in
    /// progress (about the number of workers), so a scan is cheap.
    fn first_expired(&self, now: i64) -> Result<Option<String>, StoreError> {
        let mut best: Option<(i64, String)> = None;
        for entry in self.claims.iter().map_err(db_err)? {
            let (id, deadline) = entry.map_err(db_err)?;
            let deadline = deadline.value();
            if deadline <= now && best.as_ref().is_none_or(|(b, _)| deadline < *b) {
                best = Some((deadline, id.value().to_string()));
            }
        }
        Ok(best.map(|(_, id)| id))
    }

    /// Remove `id` from the queue, the claims, the webhook schedule and the retention indexes (not the record or
    /// the image). `old` is the stored record's JSON, which says where it sits in the indexes.
    fn unlink(&mut self, id: &str, old: Option<&str>) -> Result<(), StoreError> {
        self.dequeue(id)?;
        self.unschedule_webhook(id)?;
        self.claims.remove(id).map_err(db_err)?;
        match old.map(decode) {
            Some(Ok(record)) if record.completed_at.is_some() => {
                let at = finished_millis(&record, Utc::now());
                self.finished.remove((at, id)).map_err(db_err)?;
                self.kept.remove((at, id)).map_err(db_err)?;
            }
            Some(Ok(record)) if record.status == AnalysisStatus::Processing => {}
            // finished without a time, or unreadable: find it the slow way
            Some(_) => {
                self.finished.retain(|(_, other), _| other != id).map_err(db_err)?;
                self.kept.retain(|(_, other), _| other != id).map_err(db_err)?;
            }
            None => {}
        }
        Ok(())
    }
}

/// Run `work` in one durable write transaction. `work` returns its result and whether it
/// changed anything: a transaction that changed nothing is aborted rather than committed
/// (no fsync for a lost finish or an empty queue).
fn write<T>(
    db: &Database,
    work: impl FnOnce(&mut Tables<'_>) -> Result<(T, bool), StoreError>,
) -> Result<T, StoreError> {
    let mut tx = db.begin_write().map_err(db_err)?;
    tx.set_durability(Durability::Immediate);
    let (out, changed) = {
        let mut tables = Tables::open(&tx)?;
        work(&mut tables)?
    };
    if changed {
        tx.commit().map_err(db_err)?;
    } else {
        tx.abort().map_err(db_err)?;
    }
    Ok(out)
}

#[async_trait]
impl AnalysisStore for EmbeddedStore {
    async fn submit(&self, record: &AnalysisRecord, image: &[u8]) -> Result<(), StoreError> {
        let json = encode(record)?;
        let id = record.id.to_string();
        let image = image.to_vec();
        self.blocking(move |db| {
            write(db, |t| {
                // an id submitted again (ids are random, so only by a caller's mistake) is
                // replaced and queued once, afresh
                let old = t.record_json(&id)?;
                t.unlink(&id, old.as_deref())?;
                t.analyses.insert(id.as_str(), json.as_str()).map_err(db_err)?;
                t.images.insert(id.as_str(), image.as_slice()).map_err(db_err)?;
                t.enqueue(&id)?;
                Ok(((), true))
            })
        })
        .await
    }

    async fn get_analysis(&self, id: &AnalysisId) -> Result<Option<AnalysisRecord>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let Some(table) = read_table(&tx, ANALYSES)? else {
                return Ok(None);
            };
            let found = table.get(id.as_str()).map_err(db_err)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        visibility: chrono::Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        let now_ms = now.timestamp_millis();
        let deadline = (now + visibility).timestamp_millis();
        self.blocking(move |db| {
            write(db, |t| {
                let mut changed = false;
                loop {
                    // an expired claim is older than anything still queued
                    let id = match t.first_expired(now_ms)? {
                        Some(id) => id,
                        None => {
                            let popped = t.queue.pop_first().map_err(db_err)?;
                            let Some(id) = popped.map(|(_, id)| id.value().to_string()) else {
                                return Ok((Ok(None), changed));
                            };
                            t.queued.remove(id.as_str()).map_err(db_err)?;
                            id
                        }
                    };
                    let json = t.record_json(&id)?;
                    let image = t.images.get(id.as_str()).map_err(db_err)?.map(|v| v.value().to_vec());
                    let (Some(json), Some(image)) = (json, image) else {
                        // deleted: drop it from the queue rather than hand it out
                        t.claims.remove(id.as_str()).map_err(db_err)?;
                        changed = true;
                        continue;
                    };
                    let mut record = match decode(&json) {
                        Ok(record) => record,
                        Err(e) => {
                            // hide it for `visibility` like any claim, so one unreadable record
                            // cannot keep every later job from being claimed
                            t.claims.insert(id.as_str(), deadline).map_err(db_err)?;
                            return Ok((Err(e), true));
                        }
                    };
                    if record.status != AnalysisStatus::Processing {
                        // already finished: nothing to do (finish unqueues, so only a leftover)
                        t.claims.remove(id.as_str()).map_err(db_err)?;
                        changed = true;
                        continue;
                    }
                    record.attempts = record.attempts.saturating_add(1);
                    t.analyses.insert(id.as_str(), encode(&record)?.as_str()).map_err(db_err)?;
                    t.claims.insert(id.as_str(), deadline).map_err(db_err)?;
                    return Ok((Ok(Some(Claimed { record, image })), true));
                }
            })?
        })
        .await
    }

    async fn finish(&self, record: &AnalysisRecord, drop_image: bool) -> Result<bool, StoreError> {
        if record.status == AnalysisStatus::Processing {
            // not an outcome: recording it would leave a job that nobody will ever claim
            return Ok(false);
        }
        let mut record = record.clone();
        let id = record.id.to_string();
        let at = finished_millis(&record, Utc::now());
        self.blocking(move |db| {
            write(db, |t| {
                let Some(json) = t.record_json(&id)? else {
                    return Ok((false, false));
                };
                let stored = decode(&json)?;
                if stored.status != AnalysisStatus::Processing {
                    return Ok((false, false));
                }
                record.attempts = stored.attempts;
                t.analyses.insert(id.as_str(), encode(&record)?.as_str()).map_err(db_err)?;
                t.claims.remove(id.as_str()).map_err(db_err)?;
                t.dequeue(&id)?;
                t.finished.insert((at, id.as_str()), ()).map_err(db_err)?;
                if record.callback_url.is_some() {
                    t.schedule_webhook(&id, at)?;
                }
                if drop_image {
                    t.images.remove(id.as_str()).map_err(db_err)?;
                } else if t.images.get(id.as_str()).map_err(db_err)?.is_some() {
                    t.kept.insert((at, id.as_str()), ()).map_err(db_err)?;
                }
                Ok((true, true))
            })
        })
        .await
    }

    async fn claim_webhook(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<AnalysisRecord>, StoreError> {
        let now_ms = now.timestamp_millis();
        let until = (now + lease).timestamp_millis();
        self.blocking(move |db| {
            write(db, |t| {
                let mut changed = false;
                loop {
                    let first = t.webhooks.first().map_err(db_err)?.map(|(k, _)| {
                        let (due, id) = k.value();
                        (due, id.to_string())
                    });
                    let Some((due, id)) = first.filter(|(due, _)| *due <= now_ms) else {
                        return Ok((Ok(None), changed));
                    };
                    changed = true;
                    let Some(json) = t.record_json(&id)? else {
                        t.webhooks.remove((due, id.as_str())).map_err(db_err)?;
                        t.webhook_due.remove(id.as_str()).map_err(db_err)?;
                        continue;
                    };
                    // pushed back before decoding, so one unreadable record cannot keep
                    // every later webhook from being sent
                    t.schedule_webhook(&id, until)?;
                    return Ok((decode(&json).map(Some), true));
                }
            })?
        })
        .await
    }

    async fn update_deliveries(
        &self,
        record: &AnalysisRecord,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let id = record.id.to_string();
        let deliveries = record.deliveries.clone();
        let delivered = record.delivered;
        let retry_at = retry_at.map(|t| t.timestamp_millis());
        self.blocking(move |db| {
            write(db, |t| {
                let Some(json) = t.record_json(&id)? else {
                    return Ok((false, false));
                };
                let mut stored = decode(&json)?;
                stored.deliveries = deliveries;
                stored.delivered = delivered;
                t.analyses.insert(id.as_str(), encode(&stored)?.as_str()).map_err(db_err)?;
                match retry_at {
                    Some(due) => t.schedule_webhook(&id, due)?,
                    None => {
                        t.unschedule_webhook(&id)?;
                    }
                }
                Ok((true, true))
            })
        })
        .await
    }

    async fn delete_analysis(&self, id: &AnalysisId) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            write(db, |t| {
                let old = t.analyses.remove(id.as_str()).map_err(db_err)?.map(|v| v.value().to_string());
                let image = t.images.remove(id.as_str()).map_err(db_err)?.is_some();
                let queued = t.queued.get(id.as_str()).map_err(db_err)?.is_some();
                let claimed = t.claims.get(id.as_str()).map_err(db_err)?.is_some();
                let hooked = t.webhook_due.get(id.as_str()).map_err(db_err)?.is_some();
                let changed = old.is_some() || image || queued || claimed || hooked;
                if changed {
                    t.unlink(&id, old.as_deref())?;
                }
                Ok((old.is_some(), changed))
            })
        })
        .await
    }

    async fn sweep_analyses(
        &self,
        image_before: DateTime<Utc>,
        record_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let image_before = image_before.timestamp_millis();
        let record_before = record_before.timestamp_millis();
        self.blocking(move |db| {
            write(db, |t| {
                let collect = |table: &Table<'_, (i64, &'static str), ()>, before: i64| {
                    let mut out = Vec::new();
                    for entry in table.range(..(before, "")).map_err(db_err)? {
                        let (key, _) = entry.map_err(db_err)?;
                        let (at, id) = key.value();
                        out.push((at, id.to_string()));
                    }
                    Ok::<_, StoreError>(out)
                };
                let images = collect(&t.kept, image_before)?;
                for (at, id) in &images {
                    t.images.remove(id.as_str()).map_err(db_err)?;
                    t.kept.remove((*at, id.as_str())).map_err(db_err)?;
                }
                let records = collect(&t.finished, record_before)?;
                for (at, id) in &records {
                    t.analyses.remove(id.as_str()).map_err(db_err)?;
                    t.images.remove(id.as_str()).map_err(db_err)?;
                    t.kept.remove((*at, id.as_str())).map_err(db_err)?;
                    t.finished.remove((*at, id.as_str())).map_err(db_err)?;
                    t.claims.remove(id.as_str()).map_err(db_err)?;
                    t.dequeue(id)?;
                    t.unschedule_webhook(id)?;
                }
                let changed = !images.is_empty() || !records.is_empty();
                Ok((records.len() as u64, changed))
            })
        })
        .await
    }

    async fn queue_depth(&self) -> Result<(u64, u64), StoreError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            let queued = match read_table(&tx, QUEUE)? {
                Some(table) => table.len().map_err(db_err)?,
                None => 0,
            };
            let claimed = match read_table(&tx, CLAIMS)? {
                Some(table) => table.len().map_err(db_err)?,
                None => 0,
            };
            Ok((queued, claimed))
        })
        .await
    }
}
