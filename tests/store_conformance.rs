//! One conformance suite for both quota stores: every check is an async function over a
//! `SharedStore`, and the `conformance!` macro runs each of them against a fresh embedded
//! store and a fresh real Redis. Checks that only make sense for Redis (outages, TTLs, key
//! names) follow at the end.
//!
//! Times are fabricated in the *next* year: Redis deletes a counter at once when its
//! `EXPIREAT` lies in the past, so windows before "now" would not stay counted there.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, TimeZone, Utc};
use common::redis::RedisServer;
use tellscan::auth::key::{AccountId, ApiKey, KeyId, KeyRecord, KeyState, Tier};
use tellscan::quota::{QuotaState, Source, TierLimits, WindowKind, Windows};
use tellscan::store::embedded::EmbeddedStore;
use tellscan::store::redis::RedisStore;
use tellscan::store::{Admission, SharedStore, Store, StoreError};

/// Generous per-operation deadline for the stores under test; the outage checks use a
/// shorter one to prove that calls fail fast.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------
// Fixtures

/// `month-day hh:mm:ss` UTC in the year after the current one.
fn next_year(month: u32, day: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(Utc::now().year() + 1, month, day, h, m, s).single().expect("valid fabricated time")
}

fn limits(per_minute: u64, daily: u64, monthly: u64) -> TierLimits {
    TierLimits { per_minute, daily, monthly }
}

fn record(id: &KeyId, name: &str) -> KeyRecord {
    KeyRecord {
        id: id.clone(),
        name: name.to_string(),
        account: Some(AccountId::generate()),
        tier: Tier::parse("free").expect("valid tier"),
        state: KeyState::Active,
        secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_string(),
        created_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("valid time"),
        rotated_at: None,
        last_used_at: None,
    }
}

async fn admit(
    store: &SharedStore,
    key: &KeyId,
    l: &TierLimits,
    source: Source,
    at: DateTime<Utc>,
) -> Admission {
    store.admit(key, l, source, &Windows::at(at)).await.expect("admit succeeds")
}

async fn counts(store: &SharedStore, key: &KeyId, at: DateTime<Utc>) -> [u64; 3] {
    store.usage(key, &Windows::at(at)).await.expect("usage succeeds").counts
}

fn embedded_store() -> (SharedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = EmbeddedStore::open(dir.path()).expect("embedded store opens");
    (Arc::new(store), dir)
}

fn redis_store_with(timeout: Duration) -> (SharedStore, RedisServer) {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), 8, timeout).expect("redis store builds");
    (Arc::new(store), server)
}

fn redis_store() -> (SharedStore, RedisServer) {
    redis_store_with(STORE_TIMEOUT)
}

// ---------------------------------------------------------------------------------------
// Checks shared by both stores

async fn key_records_round_trip(store: SharedStore) {
    let ids: Vec<KeyId> = (0..5).map(|_| KeyId::generate()).collect();
    let mut records: Vec<KeyRecord> =
        ids.iter().enumerate().map(|(i, id)| record(id, &format!("key {i}"))).collect();
    for r in &records {
        store.put_key(r).await.expect("put_key");
    }
    for r in &records {
        assert_eq!(store.get_key(&r.id).await.expect("get_key").as_ref(), Some(r));
    }
    let unknown = loop {
        let id = KeyId::generate();
        if !ids.contains(&id) {
            break id;
        }
    };
    assert_eq!(store.get_key(&unknown).await.expect("get_key of an unknown id"), None);

    records.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(store.list_keys().await.expect("list_keys"), records, "list is complete and in id order");

    let mut changed = records[2].clone();
    changed.name = "renamed".to_string();
    changed.state = KeyState::Disabled;
    changed.last_used_at = Some(Utc.with_ymd_and_hms(2026, 5, 6, 7, 8, 9).single().expect("valid time"));
    store.put_key(&changed).await.expect("put_key replaces");
    assert_eq!(store.get_key(&changed.id).await.expect("get_key"), Some(changed.clone()));
    records[2] = changed;
    assert_eq!(
        store.list_keys().await.expect("list_keys"),
        records,
        "a replaced key is listed once, replaced"
    );

    // a use is noted apart from the record: a later put of a stale record cannot erase it,
    // and noting a use cannot undo a change of state
    let used_at = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().expect("valid time");
    let stale = records[3].clone();
    store.touch_key(&stale.id, used_at).await.expect("touch_key");
    let mut revoked = stale.clone();
    revoked.state = KeyState::Revoked;
    store.put_key(&revoked).await.expect("put_key");
    let read = store.get_key(&stale.id).await.expect("get_key").expect("present");
    assert_eq!(read.state, KeyState::Revoked);
    assert_eq!(read.last_used_at, Some(used_at));
    let listed = store.list_keys().await.expect("list_keys");
    assert_eq!(listed.iter().find(|r| r.id == stale.id).and_then(|r| r.last_used_at), Some(used_at));
}

async fn admission_is_exact_under_concurrency(store: SharedStore) {
    let key = KeyId::generate();
    let l = limits(7, 100, 1000);
    let at = next_year(6, 15, 12, 30, 20);
    let tasks: Vec<_> = (0..10 * l.per_minute)
        .map(|_| {
            let store = Arc::clone(&store);
            let key = key.clone();
            tokio::spawn(async move { store.admit(&key, &l, Source::Api, &Windows::at(at)).await })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        let admission = task.await.expect("task completes").expect("admit succeeds");
        assert!(
            admission.counts.iter().all(|&c| c <= l.per_minute),
            "a count went past the limit: {admission:?}"
        );
        admitted += u64::from(admission.admitted);
    }
    assert_eq!(admitted, l.per_minute, "exactly the limit is admitted");
    let usage = store.usage(&key, &Windows::at(at)).await.expect("usage");
    assert_eq!(usage.counts, [7, 7, 7]);
    assert_eq!(usage.sources.day.get("api"), Some(&7));
    assert_eq!(usage.sources.month.get("api"), Some(&7));
}

async fn denied_requests_change_nothing(store: SharedStore) {
    // Only the daily window is full; the minute window still has room.
    let key = KeyId::generate();
    let l = limits(10, 3, 1000);
    let at = next_year(3, 10, 9, 15, 0);
    for n in 1..=3 {
        let a = admit(&store, &key, &l, Source::Website, at).await;
        assert_eq!(a, Admission { admitted: true, counts: [n, n, n] });
    }
    let before = store.usage(&key, &Windows::at(at)).await.expect("usage");
    for _ in 0..3 {
        let a = admit(&store, &key, &l, Source::Extension, at).await;
        assert_eq!(a, Admission { admitted: false, counts: [3, 3, 3] });
        let state = QuotaState::from_counts(a.admitted, &l, &Windows::at(at), a.counts);
        assert_eq!(state.constraining().kind, WindowKind::Day, "the full day window is reported");
    }
    assert_eq!(store.usage(&key, &Windows::at(at)).await.expect("usage"), before);

    // Only the minute window is full.
    let key = KeyId::generate();
    let l = limits(2, 100, 1000);
    admit(&store, &key, &l, Source::Api, at).await;
    admit(&store, &key, &l, Source::Api, at).await;
    let before = store.usage(&key, &Windows::at(at)).await.expect("usage");
    let a = admit(&store, &key, &l, Source::Website, at).await;
    assert_eq!(a, Admission { admitted: false, counts: [2, 2, 2] });
    assert_eq!(
        QuotaState::from_counts(false, &l, &Windows::at(at), a.counts).constraining().kind,
        WindowKind::Minute
    );
    assert_eq!(store.usage(&key, &Windows::at(at)).await.expect("usage"), before);

    // Only the monthly window is full (a limit of zero denies from the start).
    let key = KeyId::generate();
    let a = admit(&store, &key, &limits(5, 5, 0), Source::Api, at).await;
    assert_eq!(a, Admission { admitted: false, counts: [0, 0, 0] });
    assert_eq!(counts(&store, &key, at).await, [0, 0, 0]);
}

async fn windows_roll_over(store: SharedStore) {
    let key = KeyId::generate();
    let l = limits(2, 100, 1000);
    let t0 = next_year(11, 29, 23, 58, 30);
    assert!(admit(&store, &key, &l, Source::Api, t0).await.admitted);
    assert!(admit(&store, &key, &l, Source::Api, t0).await.admitted);
    assert_eq!(
        admit(&store, &key, &l, Source::Api, t0).await,
        Admission { admitted: false, counts: [2, 2, 2] }
    );

    // Next minute, same day and month.
    let t1 = t0 + chrono::Duration::seconds(60);
    assert_eq!(
        admit(&store, &key, &l, Source::Api, t1).await,
        Admission { admitted: true, counts: [1, 3, 3] }
    );
    assert_eq!(counts(&store, &key, t0).await, [2, 3, 3], "the ended minute keeps its own count");

    // Next UTC day, same month.
    let t2 = next_year(11, 30, 0, 0, 30);
    assert_eq!(counts(&store, &key, t2).await, [0, 0, 3]);
    assert_eq!(
        admit(&store, &key, &l, Source::Api, t2).await,
        Admission { admitted: true, counts: [1, 1, 4] }
    );
    let t3 = next_year(11, 30, 23, 59, 30);
    assert_eq!(
        admit(&store, &key, &l, Source::Api, t3).await,
        Admission { admitted: true, counts: [1, 2, 5] }
    );

    // Next month.
    let t4 = next_year(12, 1, 0, 0, 30);
    assert_eq!(counts(&store, &key, t4).await, [0, 0, 0]);
    assert_eq!(
        admit(&store, &key, &l, Source::Api, t4).await,
        Admission { admitted: true, counts: [1, 1, 1] }
    );
    let usage = store.usage(&key, &Windows::at(t4)).await.expect("usage");
    assert_eq!(usage.sources.month.get("api"), Some(&1), "per-source month counts restart too");
    assert_eq!(counts(&store, &key, t3).await, [1, 2, 5], "the ended month keeps its own count");
}

async fn refunds_restore_counts(store: SharedStore) {
    let key = KeyId::generate();
    let l = limits(10, 100, 1000);
    let at = next_year(4, 1, 8, 0, 0);
    let w = Windows::at(at);
    admit(&store, &key, &l, Source::Api, at).await;
    let before = store.usage(&key, &w).await.expect("usage");
    assert_eq!(
        admit(&store, &key, &l, Source::Extension, at).await,
        Admission { admitted: true, counts: [2, 2, 2] }
    );
    store.refund(&key, Source::Extension, &w).await.expect("refund");
    assert_eq!(store.usage(&key, &w).await.expect("usage"), before, "a refund undoes its admission exactly");

    // More refunds than admissions never go below zero, nor make the next admission free.
    store.refund(&key, Source::Api, &w).await.expect("refund");
    store.refund(&key, Source::Api, &w).await.expect("refund of an empty counter");
    store.refund(&key, Source::Extension, &w).await.expect("refund of an empty counter");
    let usage = store.usage(&key, &w).await.expect("usage");
    assert_eq!(usage.counts, [0, 0, 0]);
    assert!(usage.sources.day.values().chain(usage.sources.month.values()).all(|&n| n == 0), "{usage:?}");
    assert_eq!(
        admit(&store, &key, &l, Source::Api, at).await,
        Admission { admitted: true, counts: [1, 1, 1] }
    );

    // A refund for a key that was never counted creates nothing.
    let fresh = KeyId::generate();
    store.refund(&fresh, Source::Website, &w).await.expect("refund of a fresh key");
    assert_eq!(store.usage(&fresh, &w).await.expect("usage"), empty_usage());
}

fn empty_usage() -> tellscan::store::Usage {
    let zeros: std::collections::BTreeMap<String, u64> =
        Source::ALL.iter().map(|s| (s.name().to_string(), 0)).collect();
    tellscan::store::Usage {
        counts: [0, 0, 0],
        sources: tellscan::quota::SourceCounts { day: zeros.clone(), month: zeros },
    }
}

async fn sources_are_counted_separately(store: SharedStore) {
    let key = KeyId::generate();
    let l = limits(6, 100, 1000);
    let at = next_year(2, 20, 14, 45, 10);
    assert_eq!(
        store.usage(&key, &Windows::at(at)).await.expect("usage"),
        empty_usage(),
        "every source is listed"
    );
    for source in
        [Source::Api, Source::Website, Source::Extension, Source::Website, Source::Api, Source::Website]
    {
        assert!(admit(&store, &key, &l, source, at).await.admitted);
    }
    // The minute window is full now: denied requests are not counted for their source.
    assert!(!admit(&store, &key, &l, Source::ExtensionLocal, at).await.admitted);
    assert!(!admit(&store, &key, &l, Source::Api, at).await.admitted);
    let expected: std::collections::BTreeMap<String, u64> =
        [("api", 2), ("extension", 1), ("extension-local", 0), ("website", 3)]
            .map(|(s, n)| (s.to_string(), n))
            .into_iter()
            .collect();
    let usage = store.usage(&key, &Windows::at(at)).await.expect("usage");
    assert_eq!(usage.counts, [6, 6, 6]);
    assert_eq!(usage.sources.day, expected);
    assert_eq!(usage.sources.month, expected);

    // The next day of the same month: the day restarts per source, the month continues.
    let next_day = at + chrono::Duration::days(1);
    assert!(admit(&store, &key, &l, Source::ExtensionLocal, next_day).await.admitted);
    let usage = store.usage(&key, &Windows::at(next_day)).await.expect("usage");
    assert_eq!(usage.sources.day.values().sum::<u64>(), 1);
    assert_eq!(usage.sources.day.get("extension-local"), Some(&1));
    assert_eq!(usage.sources.month.get("extension-local"), Some(&1));
    assert_eq!(usage.sources.month.get("website"), Some(&3));
    assert_eq!(usage.sources.month.len(), Source::ALL.len());
}

async fn webhook_secrets_are_per_account(store: SharedStore) {
    let (a, b) = (AccountId::generate(), AccountId::generate());
    assert_eq!(store.webhook_secret(&a).await.expect("read"), None, "none until created");
    store.put_webhook_secret(&a, "whsec_first").await.expect("put");
    assert_eq!(store.webhook_secret(&a).await.expect("read").as_deref(), Some("whsec_first"));
    assert_eq!(store.webhook_secret(&b).await.expect("read"), None, "another account's is not shared");
    store.put_webhook_secret(&a, "whsec_second").await.expect("rotate");
    assert_eq!(store.webhook_secret(&a).await.expect("read").as_deref(), Some("whsec_second"));
}

async fn kind_and_ping(store: SharedStore) {
    store.ping().await.expect("ping");
    store.flush().await.expect("flush");
    assert!(["embedded", "redis"].contains(&store.kind()));
}

/// One test per (check, store): each gets a fresh store, so checks cannot see each other.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod embedded_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let (store, _dir) = super::embedded_store();
                    assert_eq!(store.kind(), "embedded");
                    super::$check(store).await;
                }
            )*
        }
        mod redis_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let (store, _server) = super::redis_store();
                    assert_eq!(store.kind(), "redis");
                    super::$check(store).await;
                }
            )*
        }
    };
}

conformance!(
    key_records_round_trip,
    admission_is_exact_under_concurrency,
    denied_requests_change_nothing,
    windows_roll_over,
    refunds_restore_counts,
    sources_are_counted_separately,
    webhook_secrets_are_per_account,
    kind_and_ping,
);

// ---------------------------------------------------------------------------------------
// Redis only

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{what}: expected StoreError::Unavailable, got {other:?}"),
    }
}

/// Retry `admit` for a few seconds: the first call after a restart may still meet a
/// connection the pool has not yet found dead.
async fn admit_when_back(store: &SharedStore, key: &KeyId, l: &TierLimits, at: DateTime<Utc>) -> Admission {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.admit(key, l, Source::Api, &Windows::at(at)).await {
            Ok(a) => return a,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not back yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not recover after Redis came back: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_fails_fast_and_recovers() {
    let (store, mut server) = redis_store_with(Duration::from_secs(1));
    let key = KeyId::generate();
    let l = limits(100, 1000, 10000);
    let at = Utc::now();
    // Fill the pool with several connections, so recovery has to discard more than one.
    let warm: Vec<_> = (0..8)
        .map(|_| {
            let (store, key) = (Arc::clone(&store), key.clone());
            tokio::spawn(async move { store.admit(&key, &l, Source::Api, &Windows::at(at)).await })
        })
        .collect();
    for task in warm {
        assert!(task.await.expect("task completes").expect("admit while Redis is up").admitted);
    }
    store.ping().await.expect("ping while Redis is up");

    server.stop();
    let started = Instant::now();
    assert_unavailable(store.ping().await, "ping while Redis is down");
    assert!(started.elapsed() < Duration::from_secs(3), "ping took {:?}", started.elapsed());
    let started = Instant::now();
    assert_unavailable(
        store.admit(&key, &l, Source::Api, &Windows::at(at)).await,
        "admit while Redis is down",
    );
    assert_unavailable(store.usage(&key, &Windows::at(at)).await, "usage while Redis is down");
    assert_unavailable(store.get_key(&key).await, "get_key while Redis is down");
    assert!(started.elapsed() < Duration::from_secs(9), "calls took {:?}", started.elapsed());

    server.restart();
    // Nothing was persisted, so the counts start again from zero on the new server.
    let a = admit_when_back(&store, &key, &l, at).await;
    assert_eq!(a, Admission { admitted: true, counts: [1, 1, 1] });
    store.ping().await.expect("ping after Redis came back");
    store.put_key(&record(&key, "after restart")).await.expect("put_key after Redis came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stall_times_out_instead_of_hanging() {
    let (store, server) = redis_store_with(Duration::from_millis(500));
    let key = KeyId::generate();
    let l = limits(100, 1000, 10000);
    assert!(admit(&store, &key, &l, Source::Api, Utc::now()).await.admitted);

    server.pause();
    for _ in 0..3 {
        let started = Instant::now();
        assert_unavailable(
            store.admit(&key, &l, Source::Api, &Windows::at(Utc::now())).await,
            "admit while stalled",
        );
        assert!(started.elapsed() < Duration::from_secs(3), "admit took {:?}", started.elapsed());
    }
    let started = Instant::now();
    assert_unavailable(store.ping().await, "ping while stalled");
    assert!(started.elapsed() < Duration::from_secs(3), "ping took {:?}", started.elapsed());

    server.resume();
    let a = admit_when_back(&store, &key, &l, Utc::now()).await;
    assert!(a.admitted);
    // The stalled requests were either never applied or applied once each; none twice.
    assert!(a.counts[2] <= 5, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_unreachable_from_the_start_fails_fast() {
    let server = RedisServer::start();
    let url = server.url();
    drop(server);
    let store =
        RedisStore::connect(&url, 4, Duration::from_millis(500)).expect("building the pool needs no server");
    let started = Instant::now();
    assert_unavailable(store.ping().await, "ping with no server");
    assert_unavailable(
        store.admit(&KeyId::generate(), &limits(1, 1, 1), Source::Api, &Windows::at(Utc::now())).await,
        "admit with no server",
    );
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(RedisStore::connect("not a url", 4, Duration::from_secs(1)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_counters_expire_and_key_names_hold_no_secret() {
    let (store, server) = redis_store();
    let api_key = ApiKey::generate();
    let mut rec = record(&api_key.id, "ttl check");
    rec.secret_hash = format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${}", api_key.secret());
    store.put_key(&rec).await.expect("put_key");
    let now = Utc::now();
    let l = limits(10, 100, 1000);
    assert!(admit(&store, &api_key.id, &l, Source::Extension, now).await.admitted);

    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("plain connection");
    let mut names: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.expect("KEYS");
    names.sort();
    let id = api_key.id.as_str();
    let counters: Vec<&String> = names.iter().filter(|n| n.starts_with("tellscan:q:")).collect();
    assert_eq!(counters.len(), 5, "three windows and two per-source counters: {names:?}");
    let month_end = Windows::at(now).windows[2].ends_at;
    for name in &counters {
        let ttl: i64 = redis::cmd("TTL").arg(name.as_str()).query_async(&mut conn).await.expect("TTL");
        assert!(ttl > 0, "{name} has TTL {ttl}");
        let longest = (month_end - now).num_seconds() + tellscan::store::COUNTER_GRACE_SECS + 5;
        assert!(ttl <= longest, "{name} has TTL {ttl}, more than its window needs");
    }
    for name in &names {
        assert!(!name.contains(api_key.secret()), "a key name holds the secret: {name}");
        assert!(!name.contains("argon2"), "a key name holds the hash: {name}");
        let allowed = name == "tellscan:keys"
            || *name == format!("tellscan:key:{id}")
            || *name == format!("tellscan:used:{id}")
            || name.starts_with(&format!("tellscan:q:{id}:"));
        assert!(allowed, "unexpected key name {name}");
    }
    let index: Vec<String> =
        redis::cmd("SMEMBERS").arg("tellscan:keys").query_async(&mut conn).await.expect("SMEMBERS");
    assert_eq!(index, vec![id.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_unreadable_data_is_corrupt_not_unavailable() {
    let (store, server) = redis_store();
    let id = KeyId::generate();
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("plain connection");
    let _: () = redis::cmd("SET")
        .arg(format!("tellscan:key:{id}"))
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let _: () =
        redis::cmd("SADD").arg("tellscan:keys").arg(id.as_str()).query_async(&mut conn).await.expect("SADD");
    assert!(matches!(store.get_key(&id).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(store.list_keys().await, Err(StoreError::Corrupt(_))));
}
