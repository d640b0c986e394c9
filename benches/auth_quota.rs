//! What auth + quota cost per request: a cached key verification plus one all-or-nothing
//! admission, on the embedded store and (when `TELLSCAN_BENCH_REDIS_URL` points at a Redis)
//! on Redis. The design's bar is 0.3 ms at p50.
//!
//! `cargo bench --bench auth_quota`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tellscan::auth::key::Tier;
use tellscan::auth::KeyService;
use tellscan::config::OnStoreError;
use tellscan::quota::{QuotaGate, Source, TierLimits};
use tellscan::store::embedded::EmbeddedStore;
use tellscan::store::redis::RedisStore;
use tellscan::store::SharedStore;

fn bench_store(c: &mut Criterion, name: &str, store: SharedStore, rt: &tokio::runtime::Runtime) {
    let tier = Tier::parse("bench").unwrap();
    let limits = TierLimits { per_minute: u64::MAX / 4, daily: u64::MAX / 4, monthly: u64::MAX / 4 };
    let keys = KeyService::new(Arc::clone(&store), Duration::from_secs(3600));
    let gate =
        QuotaGate::new(Arc::clone(&store), BTreeMap::from([(tier.clone(), limits)]), OnStoreError::Deny);
    let key = rt.block_on(keys.create("bench", tier)).unwrap().key.reveal();
    // the first verification runs argon2 and fills the cache, as the first request of a key does
    rt.block_on(keys.authenticate(Some(&key))).unwrap();
    c.bench_function(&format!("auth+quota/{name}"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let principal = keys.authenticate(Some(&key)).await.unwrap();
                let result = gate.admit(&principal, Source::Api).await;
                assert!(result.decision.is_ok());
            })
        })
    });
    c.bench_function(&format!("auth-cached/{name}"), |b| {
        b.iter(|| rt.block_on(keys.authenticate(Some(&key))).unwrap())
    });
}

fn auth_quota(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let embedded: SharedStore = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    bench_store(c, "embedded", embedded, &rt);
    if let Ok(url) = std::env::var("TELLSCAN_BENCH_REDIS_URL") {
        let redis: SharedStore = Arc::new(
            rt.block_on(async { RedisStore::connect(&url, 8, Duration::from_millis(500)) }).unwrap(),
        );
        bench_store(c, "redis", redis, &rt);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(200).measurement_time(Duration::from_secs(3));
    targets = auth_quota
}
criterion_main!(benches);
