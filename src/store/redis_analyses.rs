//! [`AnalysisStore`] for the Redis store: one work queue shared by every replica.
//!
//! Layout (under the same `tellscan:` prefix as the keys and counters):
//!
//! - `tellscan:an:<id>`: the JSON of an [`AnalysisRecord`], exactly as serialised here (no
//!   script ever re-encodes it, so a record reads back as it was written);
//! - `tellscan:an_img:<id>`: the submitted image, until analysed (or swept);
//! - `tellscan:an_queue`: LIST of the ids waiting, pushed on the left and popped on the right
//!   (first in, first out);
//! - `tellscan:an_claims`: ZSET of the ids being processed, scored by the unix millisecond
//!   at which their claim expires;
//! - `tellscan:an_attempts`: HASH id → claims so far. The count lives apart from the JSON so
//!   the claim script can increment it without decoding and re-encoding the record (Lua's
//!   cjson would rewrite numbers and empty arrays); it overrides the JSON's `attempts` on
//!   every read;
//! - `tellscan:an_done`: ZSET of finished ids scored by the unix millisecond they finished,
//!   which the retention sweep deletes whole analyses by;
//! - `tellscan:an_kept`: ZSET of finished ids whose image is still kept, scored the same,
//!   which the sweep deletes images by;
//! - `tellscan:an_hooks`: ZSET of the ids whose webhook is to be sent, scored by the unix
//!   millisecond it is due (a claimed one is pushed back by the sender's lease).
//!
//! Submit, claim, finish, delete and sweep are Lua scripts, each one atomic step across
//! replicas: two replicas never claim the same job, and only the first finisher records an
//! outcome (the script checks the stored status with `cjson.decode`, which only reads).
//! Delivery bookkeeping is a compare-and-set of the whole record, retried on conflict. The
//! claim script finds its ids in the queue, so it names record and image keys that are not
//! declared in `KEYS`: fine on a single Redis (or a replicated one), not on Redis Cluster.
//!
//! `attempts` belongs to the store: only a claim increments it, and [`AnalysisStore::finish`]
//! and [`AnalysisStore::update_deliveries`] cannot change it.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::Script;

use super::analyses::{AnalysisStore, Claimed};
use super::redis::{redis_err, RedisStore};
use super::StoreError;
use crate::analyses::{AnalysisId, AnalysisRecord, AnalysisStatus};

const RECORD_PREFIX: &str = "tellscan:an:";
const IMAGE_PREFIX: &str = "tellscan:an_img:";
const QUEUE: &str = "tellscan:an_queue";
const CLAIMS: &str = "tellscan:an_claims";
const ATTEMPTS: &str = "tellscan:an_attempts";
const DONE: &str = "tellscan:an_done";
const KEPT: &str = "tellscan:an_kept";
const HOOKS: &str = "tellscan:an_hooks";

/// Ids the sweep handles per script call, so one call never blocks Redis for long.
const SWEEP_BATCH: usize = 256;
/// Compare-and-set rounds of `update_deliveries` before giving up.
const CAS_ROUNDS: usize = 32;

/// KEYS: record, image, queue, claims, done, kept, attempts, hooks.
/// ARGV: id, record JSON, image, attempts.
///
/// An id submitted again (ids are random, so only by a caller's mistake) is replaced and
/// queued once, afresh.
const SUBMIT_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('LREM', KEYS[3], 0, ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('ZREM', KEYS[6], ARGV[1])
  redis.call('ZREM', KEYS[8], ARGV[1])
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[7], ARGV[1], ARGV[4])
redis.call('LPUSH', KEYS[3], ARGV[1])
return 1
";

/// KEYS: queue, claims, attempts.
/// ARGV: now (ms), new deadline (ms), record key prefix, image key prefix.
///
/// The expired claim with the earliest deadline first (it is older than anything still
/// queued), else the oldest queued id. An id whose record or image is gone, or whose record
/// is no longer `processing`, is dropped and the next one tried. Returns
/// `{id, record JSON, image, attempts}`, or nil when there is nothing to do.
const CLAIM_LUA: &str = r"
while true do
  local id
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1)
  if #expired > 0 then
    id = expired[1]
  else
    id = redis.call('RPOP', KEYS[1])
    if not id then
      return false
    end
  end
  local json = redis.call('GET', ARGV[3] .. id)
  local image = redis.call('GET', ARGV[4] .. id)
  local live = json and image
  if live then
    local ok, record = pcall(cjson.decode, json)
    -- an unreadable record is handed out (and reported by the caller) rather than lost
    live = not ok or type(record) ~= 'table' or record.status == 'processing'
  end
  if live then
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    local attempts = redis.call('HINCRBY', KEYS[3], id, 1)
    return {id, json, image, attempts}
  end
  redis.call('ZREM', KEYS[2], id)
end
";

/// KEYS: record, image, queue, claims, done, kept, hooks.
/// ARGV: id, record JSON, drop image (1/0), finished at (ms), schedule the webhook (1/0).
///
/// Returns 1 when recorded, 0 when the record is gone or no longer `processing`.
const FINISH_LUA: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
local ok, record = pcall(cjson.decode, current)
if not ok or type(record) ~= 'table' or record.status ~= 'processing' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
if redis.call('ZREM', KEYS[4], ARGV[1]) == 0 then
  -- finished without a claim: it may still be queued (a scan, so only then)
  redis.call('LREM', KEYS[3], 0, ARGV[1])
end
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[2])
elseif redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('ZADD', KEYS[6], ARGV[4], ARGV[1])
end
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[7], ARGV[4], ARGV[1])
end
return 1
";

/// KEYS: hooks, attempts.
/// ARGV: now (ms), lease end (ms), record key prefix.
///
/// The webhook due longest (at or before now), pushed back to the lease end. An id whose
/// record is gone is dropped and the next one tried. Returns `{record JSON, attempts}`, or
/// nil when nothing is due.
const CLAIM_HOOK_LUA: &str = r"
while true do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
  if #due == 0 then
    return false
  end
  local id = due[1]
  local json = redis.call('GET', ARGV[3] .. id)
  if json then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    return {json, redis.call('HGET', KEYS[2], id) or '0'}
  end
  redis.call('ZREM', KEYS[1], id)
end
";

/// KEYS: record, hooks.
/// ARGV: the record JSON the new one was derived from, the new record JSON, id, when the
/// webhook is due again (ms; empty: never).
///
/// Returns 1 when replaced, 0 when the record changed meanwhile, -1 when it is gone.
const DELIVERIES_LUA: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('ZREM', KEYS[2], ARGV[3])
  return -1
end
if current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[3])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
return 1
";

/// KEYS: record, image, queue, claims, done, kept, attempts, hooks.
/// ARGV: id.
///
/// Returns 1 when the record existed. Only a job neither claimed nor finished can still be
/// queued, so only then is the queue scanned.
const DELETE_LUA: &str = r"
local existed = redis.call('EXISTS', KEYS[1])
local claimed = redis.call('ZREM', KEYS[4], ARGV[1])
local finished = redis.call('ZREM', KEYS[5], ARGV[1])
if existed == 1 and claimed == 0 and finished == 0 then
  redis.call('LREM', KEYS[3], 0, ARGV[1])
end
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
redis.call('ZREM', KEYS[8], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2])
return existed
";

/// KEYS: done, kept, attempts, hooks.
/// ARGV: images before (ms, exclusive), records before (ms, exclusive), batch size,
/// record key prefix, image key prefix.
///
/// Returns `{images dropped, records deleted}`; the caller repeats while a batch was full.
const SWEEP_LUA: &str = r"
local images = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(images) do
  redis.call('DEL', ARGV[5] .. id)
  redis.call('ZREM', KEYS[2], id)
end
local records = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(records) do
  redis.call('DEL', ARGV[4] .. id, ARGV[5] .. id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[4], id)
end
return {#images, #records}
";

static SUBMIT: LazyLock<Script> = LazyLock::new(|| Script::new(SUBMIT_LUA));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_LUA));
static FINISH: LazyLock<Script> = LazyLock::new(|| Script::new(FINISH_LUA));
static CLAIM_HOOK: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_HOOK_LUA));
static DELIVERIES: LazyLock<Script> = LazyLock::new(|| Script::new(DELIVERIES_LUA));
static DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(DELETE_LUA));
static SWEEP: LazyLock<Script> = LazyLock::new(|| Script::new(SWEEP_LUA));

fn record_key(id: &str) -> String {
    format!("{RECORD_PREFIX}{id}")
}

fn image_key(id: &str) -> String {
    format!("{IMAGE_PREFIX}{id}")
}

fn encode(record: &AnalysisRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|e| StoreError::Corrupt(format!("analysis record: {e}")))
}

/// A stored record with the store's count of claims (when there is one) as `attempts`.
fn decode(json: &str, attempts: Option<i64>) -> Result<AnalysisRecord, StoreError> {
    let mut record: AnalysisRecord =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("analysis record: {e}")))?;
    if let Some(n) = attempts {
        record.attempts = u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    }
    Ok(record)
}

impl RedisStore {
    /// The stored JSON of a record and its count of claims, read together.
    async fn read_analysis(&self, id: &str) -> Result<(Option<String>, Option<i64>), StoreError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(record_key(id))
                .cmd("HGET")
                .arg(ATTEMPTS)
                .arg(id)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)
        })
        .await
    }
}

/// An invocation of a script that touches every key of one job (submit and delete declare
/// the same eight keys, in this order).
fn job_invocation<'a>(script: &'a Script, id: &str) -> redis::ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    invocation
        .key(record_key(id))
        .key(image_key(id))
        .key(QUEUE)
        .key(CLAIMS)
        .key(DONE)
        .key(KEPT)
        .key(ATTEMPTS)
        .key(HOOKS);
    invocation
}

#[async_trait]
impl AnalysisStore for RedisStore {
    async fn submit(&self, record: &AnalysisRecord, image: &[u8]) -> Result<(), StoreError> {
        let json = encode(record)?;
        let id = record.id.as_str();
        let mut invocation = job_invocation(&SUBMIT, id);
        invocation.arg(id).arg(&json).arg(image).arg(record.attempts);
        self.bounded(async {
            let mut conn = self.conn().await?;
            let _: i64 = invocation.invoke_async(&mut conn).await.map_err(redis_err)?;
            Ok(())
        })
        .await
    }

    async fn get_analysis(&self, id: &AnalysisId) -> Result<Option<AnalysisRecord>, StoreError> {
        let (json, attempts) = self.read_analysis(id.as_str()).await?;
        json.map(|j| decode(&j, attempts)).transpose()
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        visibility: chrono::Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        let mut invocation = CLAIM.prepare_invoke();
        invocation
            .key(QUEUE)
            .key(CLAIMS)
            .key(ATTEMPTS)
            .arg(now.timestamp_millis())
            .arg((now + visibility).timestamp_millis())
            .arg(RECORD_PREFIX)
            .arg(IMAGE_PREFIX);
        let claimed: Option<(String, String, Vec<u8>, i64)> = self
            .bounded(async {
                let mut conn = self.conn().await?;
                invocation.invoke_async(&mut conn).await.map_err(redis_err)
            })
            .await?;
        let Some((_, json, image, attempts)) = claimed else {
            return Ok(None);
        };
        // an unreadable record stays claimed (hidden for `visibility`), so the next claim
        // moves on to the next job
        let record = decode(&json, Some(attempts))?;
        Ok(Some(Claimed { record, image }))
    }

    async fn finish(&self, record: &AnalysisRecord, drop_image: bool) -> Result<bool, StoreError> {
        if record.status == AnalysisStatus::Processing {
            // not an outcome: recording it would leave a job that nobody will ever claim
            return Ok(false);
        }
        let json = encode(record)?;
        let id = record.id.as_str();
        let at = record.completed_at.unwrap_or_else(Utc::now).timestamp_millis();
        let mut invocation = FINISH.prepare_invoke();
        invocation
            .key(record_key(id))
            .key(image_key(id))
            .key(QUEUE)
            .key(CLAIMS)
            .key(DONE)
            .key(KEPT)
            .key(HOOKS)
            .arg(id)
            .arg(&json)
            .arg(if drop_image { "1" } else { "0" })
            .arg(at)
            .arg(if record.callback_url.is_some() { "1" } else { "0" });
        self.bounded(async {
            let mut conn = self.conn().await?;
            let done: i64 = invocation.invoke_async(&mut conn).await.map_err(redis_err)?;
            Ok(done == 1)
        })
        .await
    }

    async fn claim_webhook(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<AnalysisRecord>, StoreError> {
        let mut invocation = CLAIM_HOOK.prepare_invoke();
        invocation
            .key(HOOKS)
            .key(ATTEMPTS)
            .arg(now.timestamp_millis())
            .arg((now + lease).timestamp_millis())
            .arg(RECORD_PREFIX);
        let claimed: Option<(String, i64)> = self
            .bounded(async {
                let mut conn = self.conn().await?;
                invocation.invoke_async(&mut conn).await.map_err(redis_err)
            })
            .await?;
        claimed.map(|(json, attempts)| decode(&json, Some(attempts))).transpose()
    }

    async fn update_deliveries(
        &self,
        record: &AnalysisRecord,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let id = record.id.as_str();
        let retry_at = retry_at.map_or_else(String::new, |t| t.timestamp_millis().to_string());
        for _ in 0..CAS_ROUNDS {
            let (Some(current), _) = self.read_analysis(id).await? else {
                return Ok(false);
            };
            let mut stored = decode(&current, None)?;
            stored.deliveries = record.deliveries.clone();
            stored.delivered = record.delivered;
            let mut invocation = DELIVERIES.prepare_invoke();
            invocation
                .key(record_key(id))
                .key(HOOKS)
                .arg(&current)
                .arg(encode(&stored)?)
                .arg(id)
                .arg(&retry_at);
            let replaced: i64 = self
                .bounded(async {
                    let mut conn = self.conn().await?;
                    invocation.invoke_async(&mut conn).await.map_err(redis_err)
                })
                .await?;
            match replaced {
                1 => return Ok(true),
                -1 => return Ok(false),
                _ => continue,
            }
        }
        Err(StoreError::Unavailable(format!(
            "analysis {id} changed under {CAS_ROUNDS} consecutive delivery updates"
        )))
    }

    async fn delete_analysis(&self, id: &AnalysisId) -> Result<bool, StoreError> {
        let id = id.as_str();
        let mut invocation = job_invocation(&DELETE, id);
        invocation.arg(id);
        self.bounded(async {
            let mut conn = self.conn().await?;
            let existed: i64 = invocation.invoke_async(&mut conn).await.map_err(redis_err)?;
            Ok(existed == 1)
        })
        .await
    }

    async fn sweep_analyses(
        &self,
        image_before: DateTime<Utc>,
        record_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut invocation = SWEEP.prepare_invoke();
        invocation
            .key(DONE)
            .key(KEPT)
            .key(ATTEMPTS)
            .key(HOOKS)
            .arg(image_before.timestamp_millis())
            .arg(record_before.timestamp_millis())
            .arg(SWEEP_BATCH)
            .arg(RECORD_PREFIX)
            .arg(IMAGE_PREFIX);
        let mut deleted = 0u64;
        loop {
            // one deadline per batch: a large backlog takes several, each short
            let (images, records): (usize, usize) = self
                .bounded(async {
                    let mut conn = self.conn().await?;
                    invocation.invoke_async(&mut conn).await.map_err(redis_err)
                })
                .await?;
            deleted += records as u64;
            if images < SWEEP_BATCH && records < SWEEP_BATCH {
                return Ok(deleted);
            }
        }
    }

    async fn queue_depth(&self) -> Result<(u64, u64), StoreError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            redis::pipe()
                .cmd("LLEN")
                .arg(QUEUE)
                .cmd("ZCARD")
                .arg(CLAIMS)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)
        })
        .await
    }
}
