//! The Redis store, for several replicas sharing one set of keys and counters.
//!
//! Layout (only key *ids* ever appear in Redis key names, never secrets or hashes):
//!
//! - `tellscan:key:<id>`: the JSON of a [`KeyRecord`];
//! - `tellscan:used:<id>`: unix second of the key's last verified use (apart from the record,
//!   so noting a use never overwrites a concurrent change);
//! - `tellscan:keys`: the set of ids, so keys can be listed without `KEYS`/`SCAN`;
//! - `tellscan:q:<counter name>`: one integer per window counter and per-source counter, as
//!   named by [`counter_name`] and [`source_counter_name`], each expiring at [`expires_at`] so
//!   Redis forgets ended windows by itself.
//!
//! Admission is one Lua script, so the check of the three windows and the increments are a
//! single atomic step across replicas; a denied request writes nothing.
//!
//! Every operation runs under one deadline (the `timeout` given to [`RedisStore::connect`]):
//! the pool's wait/create/recycle timeouts and the connection's connect/response timeouts
//! each bound one step, but a request may take several steps (several dead pooled
//! connections to recycle, then a fresh connect), so the whole operation is bounded too. A
//! request therefore fails with [`StoreError::Unavailable`] instead of hanging while Redis
//! is down or stalled, and the pool drops broken connections on their next checkout (the
//! recycle check pings them), so the same store recovers once Redis is back.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::{Connection, Manager, Pool, PoolError, Runtime};
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, Script};

use super::{
    counter_name, expires_at, source_counter_name, source_windows, Admission, Store, StoreError, Usage,
};
use crate::auth::key::{AccountId, KeyId, KeyRecord};
use crate::quota::{Source, TierLimits, WindowKind, Windows};

/// Prefix of every Redis key this store writes, so it can share a Redis with other tenants.
const PREFIX: &str = "tellscan";

/// KEYS: minute, day, month counters, then the day and month counters of the source.
/// ARGV: the three limits, then the expire-at second of each of the five keys.
///
/// Reads before writing so a denied request leaves every counter as it was; `EXPIREAT` on
/// every admission (not only on creation) is idempotent and keeps a counter whose expiry was
/// lost (e.g. restored from an old dump) from living for ever.
const ADMIT_LUA: &str = r"
local counts = {}
for i = 1, 3 do
  counts[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, 3 do
  if counts[i] >= tonumber(ARGV[i]) then
    return {0, counts[1], counts[2], counts[3]}
  end
end
for i = 1, 5 do
  local n = redis.call('INCR', KEYS[i])
  redis.call('EXPIREAT', KEYS[i], ARGV[3 + i])
  if i <= 3 then
    counts[i] = n
  end
end
return {1, counts[1], counts[2], counts[3]}
";

/// KEYS: the counters one admission incremented.
///
/// A counter that already expired (or was never written) is left absent rather than created
/// at -1, and none goes below zero, matching the embedded store.
const REFUND_LUA: &str = r"
for i = 1, #KEYS do
  local n = tonumber(redis.call('GET', KEYS[i]))
  if n and n > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 0
";

/// The Redis-backed store: a deadpool of multiplexed connections and the two scripts.
pub struct RedisStore {
    pool: Pool,
    timeout: Duration,
    admit_script: Script,
    refund_script: Script,
}

impl fmt::Debug for RedisStore {
    // The URL may carry a password, so only the pool's shape is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("RedisStore")
            .field("max_size", &status.max_size)
            .field("size", &status.size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Build a store for the Redis at `url` with up to `pool_size` connections.
    ///
    /// Connections are opened lazily, so this succeeds while Redis is down (the server can
    /// start before Redis and report unhealthy until it answers); only a malformed URL fails.
    /// Every later operation fails with [`StoreError::Unavailable`] after about `timeout`.
    pub fn connect(url: &str, pool_size: usize, timeout: Duration) -> Result<RedisStore, StoreError> {
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        // The error text of a bad URL does not echo the URL, so a password cannot leak here.
        let manager = Manager::new_with_config(url, connection)
            .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot build the Redis pool: {e}")))?;
        Ok(RedisStore {
            pool,
            timeout,
            admit_script: Script::new(ADMIT_LUA),
            refund_script: Script::new(REFUND_LUA),
        })
    }

    /// Run one operation under the store's deadline.
    pub(super) async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, op).await.map_err(|_| {
            StoreError::Unavailable(format!("Redis did not answer within {} ms", self.timeout.as_millis()))
        })?
    }

    /// A pooled connection (recycled with a PING, so a dead one is replaced, not returned).
    pub(super) async fn conn(&self) -> Result<Connection, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }
}

pub(super) fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => redis_err(e),
        other => StoreError::Unavailable(format!("Redis pool: {other}")),
    }
}

pub(super) fn redis_err(e: RedisError) -> StoreError {
    match e.kind() {
        // The server answered, but with something the store never writes.
        ErrorKind::UnexpectedReturnType => StoreError::Corrupt(format!("Redis reply: {e}")),
        _ => StoreError::Unavailable(format!("Redis: {e}")),
    }
}

fn record_key(id: &str) -> String {
    format!("{PREFIX}:key:{id}")
}

fn used_key(id: &str) -> String {
    format!("{PREFIX}:used:{id}")
}

fn webhook_secret_key(account: &str) -> String {
    format!("{PREFIX}:whsec:{account}")
}

fn index_key() -> String {
    format!("{PREFIX}:keys")
}

fn quota_key(counter: &str) -> String {
    format!("{PREFIX}:q:{counter}")
}

fn decode_record(json: &str, last_used: Option<&str>) -> Result<KeyRecord, StoreError> {
    let mut record: KeyRecord =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("key record: {e}")))?;
    let used =
        last_used.and_then(|t| t.parse::<i64>().ok()).and_then(|t| chrono::DateTime::from_timestamp(t, 0));
    if used.is_some() {
        record.last_used_at = record.last_used_at.max(used);
    }
    Ok(record)
}

fn decode_count(name: &str, value: Option<String>) -> Result<u64, StoreError> {
    value.map_or(Ok(0), |v| {
        // A refund racing an expiry could in theory leave a negative count; it means "nothing".
        v.parse::<i64>().map(|n| n.max(0) as u64).map_err(|_| {
            StoreError::Corrupt(format!("counter {name} holds '{}'", v.chars().take(32).collect::<String>()))
        })
    })
}

fn count_from_script(n: i64) -> u64 {
    n.max(0) as u64
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(redis_err)?;
            Ok(())
        })
        .await
    }

    async fn put_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let id = record.id.to_string();
        self.bounded(async {
            let mut conn = self.conn().await?;
            // MULTI/EXEC so a listed id always has its record.
            let _: () = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(record_key(&id))
                .arg(&json)
                .ignore()
                .cmd("SADD")
                .arg(index_key())
                .arg(&id)
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            Ok(())
        })
        .await
    }

    async fn put_webhook_secret(&self, account: &AccountId, secret: &str) -> Result<(), StoreError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let _: () = redis::cmd("SET")
                .arg(webhook_secret_key(account.as_str()))
                .arg(secret)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            Ok(())
        })
        .await
    }

    async fn webhook_secret(&self, account: &AccountId) -> Result<Option<String>, StoreError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            redis::cmd("GET")
                .arg(webhook_secret_key(account.as_str()))
                .query_async(&mut conn)
                .await
                .map_err(redis_err)
        })
        .await
    }

    async fn touch_key(&self, id: &KeyId, at: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let _: () = redis::cmd("SET")
                .arg(used_key(id.as_str()))
                .arg(at.timestamp())
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            Ok(())
        })
        .await
    }

    async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let (json, used): (Option<String>, Option<String>) = redis::cmd("MGET")
                .arg(record_key(id.as_str()))
                .arg(used_key(id.as_str()))
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            json.as_deref().map(|j| decode_record(j, used.as_deref())).transpose()
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let ids: Vec<String> =
                redis::cmd("SMEMBERS").arg(index_key()).query_async(&mut conn).await.map_err(redis_err)?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let names: Vec<String> =
                ids.iter().map(|id| record_key(id)).chain(ids.iter().map(|id| used_key(id))).collect();
            let found: Vec<Option<String>> =
                redis::cmd("MGET").arg(&names).query_async(&mut conn).await.map_err(redis_err)?;
            let (records, used) = found.split_at(ids.len());
            // An id without a record can only come from a hand edit; listing the rest is more
            // useful than failing the whole listing.
            let mut records = records
                .iter()
                .zip(used)
                .filter_map(|(json, used)| json.as_deref().map(|j| decode_record(j, used.as_deref())))
                .collect::<Result<Vec<_>, _>>()?;
            records.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(records)
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
        let mut invocation = self.admit_script.prepare_invoke();
        for w in &windows.windows {
            invocation.key(quota_key(&counter_name(key, w)));
        }
        for w in source_windows(windows) {
            invocation.key(quota_key(&source_counter_name(key, w, source)));
        }
        for limit in limits.as_array() {
            invocation.arg(limit);
        }
        for w in windows.windows.iter().chain(source_windows(windows)) {
            invocation.arg(expires_at(w).timestamp());
        }
        self.bounded(async {
            let mut conn = self.conn().await?;
            let reply: Vec<i64> = invocation.invoke_async(&mut conn).await.map_err(redis_err)?;
            match reply[..] {
                [admitted, m, d, mo] => {
                    Ok(Admission { admitted: admitted == 1, counts: [m, d, mo].map(count_from_script) })
                }
                _ => Err(StoreError::Corrupt(format!("admission script returned {} values", reply.len()))),
            }
        })
        .await
    }

    async fn refund(&self, key: &KeyId, source: Source, windows: &Windows) -> Result<(), StoreError> {
        let mut invocation = self.refund_script.prepare_invoke();
        for w in &windows.windows {
            invocation.key(quota_key(&counter_name(key, w)));
        }
        for w in source_windows(windows) {
            invocation.key(quota_key(&source_counter_name(key, w, source)));
        }
        self.bounded(async {
            let mut conn = self.conn().await?;
            let _: i64 = invocation.invoke_async(&mut conn).await.map_err(redis_err)?;
            Ok(())
        })
        .await
    }

    async fn usage(&self, key: &KeyId, windows: &Windows) -> Result<Usage, StoreError> {
        let counters: Vec<String> = windows.windows.iter().map(|w| counter_name(key, w)).collect();
        let sources: Vec<(WindowKind, Source, String)> = source_windows(windows)
            .flat_map(|w| Source::ALL.map(|s| (w.kind, s, source_counter_name(key, w, s))))
            .collect();
        let names: Vec<String> =
            counters.iter().chain(sources.iter().map(|(_, _, name)| name)).map(|n| quota_key(n)).collect();
        let values: Vec<Option<String>> = self
            .bounded(async {
                let mut conn = self.conn().await?;
                redis::cmd("MGET").arg(&names).query_async(&mut conn).await.map_err(redis_err)
            })
            .await?;
        if values.len() != names.len() {
            return Err(StoreError::Corrupt(format!(
                "MGET of {} keys returned {} values",
                names.len(),
                values.len()
            )));
        }
        let mut values = names.iter().zip(values).map(|(name, v)| decode_count(name, v));
        let mut usage = Usage::default();
        for count in usage.counts.iter_mut() {
            *count = values.next().transpose()?.unwrap_or(0);
        }
        for (kind, source, _) in &sources {
            let n = values.next().transpose()?.unwrap_or(0);
            let bucket = match kind {
                WindowKind::Day => &mut usage.sources.day,
                _ => &mut usage.sources.month,
            };
            bucket.insert(source.name().to_string(), n);
        }
        Ok(usage)
    }
}
