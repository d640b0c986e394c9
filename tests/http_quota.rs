//! Quota behaviour over real HTTP, every scenario on both stores: exact admission under a
//! concurrent burst, denied requests counting nothing, the daily window constraining before
//! the minute one, monthly counts surviving a restart (embedded), and Redis outages under the
//! `allow` and `deny` policies.
//!
//! Window roll-over is not tested here (it needs the real clock to pass a minute); the store
//! conformance suite covers it with fabricated times.
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::redis::RedisServer;
use common::server::{
    away_from_minute_edge, client, detect_request, form, settings, small_jpeg, status_json, usage_request,
    used, TestServer,
};
use serde_json::Value;
use tellscan::auth::key::Tier;
use tellscan::config::{OnStoreError, Settings};
use tellscan::quota::TierLimits;

// ---------------------------------------------------------------------------------------
// Fixtures

/// Which store a scenario runs on.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Embedded,
    Redis,
}

/// A started server and, for Redis, the redis-server it uses (dropped after the server).
struct Running {
    server: TestServer,
    _redis: Option<RedisServer>,
}

async fn start(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> Running {
    match backend {
        Backend::Embedded => Running { server: TestServer::embedded_with(adjust).await, _redis: None },
        Backend::Redis => {
            let redis = RedisServer::start();
            let server = TestServer::redis_with(&redis.url(), adjust).await;
            Running { server, _redis: Some(redis) }
        }
    }
}

/// Set the limits of the `free` tier.
fn free_limits(s: &mut Settings, per_minute: u64, daily: u64, monthly: u64) {
    s.quota.tiers.insert(Tier::parse("free").unwrap(), TierLimits { per_minute, daily, monthly });
}

/// `POST /api/detect` with the small JPEG and an optional `x-detection-source`.
async fn detect_with(server: &TestServer, key: &str, source: Option<&str>) -> reqwest::Response {
    let form = form(small_jpeg(), "a.jpg", None);
    detect_request(server, Some(key), source, form).send().await.expect("detect request is answered")
}

async fn detect(server: &TestServer, key: &str) -> reqwest::Response {
    detect_with(server, key, None).await
}

/// `GET /api/usage/status`, asserting 200.
async fn usage(server: &TestServer, key: &str) -> Value {
    let resp = usage_request(server, Some(key)).send().await.expect("usage request is answered");
    assert_eq!(resp.status(), 200, "usage status: {:?}", resp.text().await);
    resp.json().await.expect("usage is JSON")
}

/// Per-source counts of one window (`day` or `month`), absent sources as 0.
fn sources(usage: &Value, window: &str) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> =
        ["api", "extension", "extension-local", "website"].iter().map(|s| (s.to_string(), 0)).collect();
    let map = usage["sources"][window].as_object().unwrap_or_else(|| panic!("sources.{window} in {usage}"));
    for (name, n) in map {
        out.insert(name.clone(), n.as_u64().expect("a count"));
    }
    out
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).map(|v| v.to_str().expect("ASCII header").to_string())
}

fn minute_id() -> String {
    Utc::now().format("%Y%m%d%H%M").to_string()
}

/// The value of a Prometheus sample, 0 when absent.
fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().split(' ').next()?.parse().ok()))
        .unwrap_or(0.0)
}

async fn metrics(server: &TestServer) -> String {
    let resp = client().get(server.url("/metrics")).send().await.expect("metrics answered");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("metrics text")
}

async fn health(server: &TestServer) -> (u16, Value) {
    status_json(client().get(server.url("/health")).send().await.expect("health answered")).await
}

// ---------------------------------------------------------------------------------------
// Exactness under a concurrent burst

async fn burst_admits_exactly_the_limit(backend: Backend) {
    const L: u64 = 5;
    const N: usize = 50;
    let run = start(backend, |s| {
        free_limits(s, L, 1000, 1000);
        // room for the whole burst in the detection pool, so no request is shed with 503
        s.server.queue = 2 * N;
    })
    .await;
    let server = &run.server;
    // fill the result cache (both option sets) with another key so the burst is cheap
    let warm = server.key("enterprise").await;
    for source in [None, Some("extension")] {
        let resp = detect_with(server, &warm, source).await;
        assert_eq!(resp.status(), 200, "warm-up detection");
    }
    let key = server.key("free").await;
    // verify the key once before the burst (usage counts nothing): the burst then measures
    // admission alone, not 50 concurrent first verifications of one key
    assert_eq!(used(&usage(server, &key).await), [0, 0, 0]);
    let kinds = [None, Some("extension"), Some("website"), Some("extension-local")];
    let jpeg = small_jpeg();

    away_from_minute_edge(6).await;
    let minute_before = minute_id();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let source = kinds[i % kinds.len()];
            let req = detect_request(server, Some(&key), source, form(jpeg.clone(), "a.jpg", None));
            tokio::spawn(async move {
                let resp = req.send().await.expect("answered");
                let status = resp.status().as_u16();
                let retry = header(&resp, "retry-after");
                let body: Value = resp.json().await.expect("JSON body");
                (source.unwrap_or("api"), status, retry, body)
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("request task"));
    }
    let after = usage(server, &key).await;
    assert_eq!(minute_id(), minute_before, "the burst crossed a minute boundary; the test guards against it");

    let ok = results.iter().filter(|r| r.1 == 200).count() as u64;
    let denied = results.iter().filter(|r| r.1 == 429).count() as u64;
    let other: Vec<_> = results.iter().filter(|r| r.1 != 200 && r.1 != 429).collect();
    assert!(other.is_empty(), "only 200 and 429 expected, got {other:?}");
    assert_eq!(ok, L, "admitted");
    assert_eq!(denied, N as u64 - L, "denied");
    for (_, status, retry, body) in &results {
        if *status == 429 {
            assert_eq!(body["error"], "quota_exceeded");
            let retry: u64 = retry.as_deref().expect("429 carries Retry-After").parse().expect("seconds");
            assert!((1..=60).contains(&retry), "Retry-After {retry} for a full minute window");
        } else {
            assert!(body["score"].is_number(), "a report: {body}");
        }
    }
    assert_eq!(used(&after), [L, L, L], "usage after the burst: {after}");
    let mut admitted_by_source: BTreeMap<String, u64> =
        ["api", "extension", "extension-local", "website"].iter().map(|s| (s.to_string(), 0)).collect();
    for (source, status, _, _) in &results {
        if *status == 200 {
            *admitted_by_source.get_mut(*source).expect("known source") += 1;
        }
    }
    assert_eq!(sources(&after, "day"), admitted_by_source, "day sources: {after}");
    assert_eq!(sources(&after, "month"), admitted_by_source, "month sources: {after}");
    assert_eq!(after["windows"]["minute"]["remaining"], 0);
    assert_eq!(after["windows"]["day"]["remaining"], 1000 - L);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn burst_admits_exactly_the_limit_embedded() {
    burst_admits_exactly_the_limit(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn burst_admits_exactly_the_limit_redis() {
    burst_admits_exactly_the_limit(Backend::Redis).await;
}

// ---------------------------------------------------------------------------------------
// A denied request changes nothing

async fn denied_requests_change_nothing(backend: Backend) {
    const L: u64 = 3;
    let run = start(backend, |s| free_limits(s, L, 1000, 1000)).await;
    let server = &run.server;
    let key = server.key("free").await;
    away_from_minute_edge(8).await;
    let minute_before = minute_id();
    for i in 0..L {
        let resp = detect(server, &key).await;
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(header(&resp, "x-ratelimit-remaining").as_deref(), Some((L - 1 - i).to_string().as_str()));
    }
    let before = usage(server, &key).await;
    assert_eq!(used(&before), [L, L, L]);
    for _ in 0..5 {
        let resp = detect(server, &key).await;
        assert_eq!(resp.status(), 429);
        assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
        assert!(header(&resp, "ratelimit").expect("RateLimit header").starts_with("\"minute\""));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "quota_exceeded");
    }
    let again = usage(server, &key).await;
    assert_eq!(minute_id(), minute_before, "crossed a minute boundary; the test guards against it");
    assert_eq!(used(&again), used(&before), "before {before}\nafter {again}");
    assert_eq!(again["sources"], before["sources"]);
    assert_eq!(sources(&again, "day")["api"], L);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denied_requests_change_nothing_embedded() {
    denied_requests_change_nothing(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denied_requests_change_nothing_redis() {
    denied_requests_change_nothing(Backend::Redis).await;
}

// ---------------------------------------------------------------------------------------
// The daily window constrains before the minute window

async fn daily_limit_applies_before_the_minute_limit(backend: Backend) {
    let run = start(backend, |s| free_limits(s, 10, 3, 1000)).await;
    let server = &run.server;
    let key = server.key("free").await;
    for i in 0..3 {
        let resp = detect(server, &key).await;
        assert_eq!(resp.status(), 200, "request {i}");
        // the day window has the fewest requests left, so it is the one reported
        assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("3"));
    }
    let resp = detect(server, &key).await;
    let now = Utc::now();
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("3"));
    assert_eq!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
    let ratelimit = header(&resp, "ratelimit").expect("RateLimit header");
    assert!(ratelimit.starts_with("\"day\""), "RateLimit: {ratelimit}");
    let policy = header(&resp, "ratelimit-policy").expect("RateLimit-Policy header");
    for part in ["\"minute\";q=10", "\"day\";q=3", "\"month\";q=1000"] {
        assert!(policy.contains(part), "RateLimit-Policy {policy} lacks {part}");
    }
    let tomorrow = now.date_naive().succ_opt().expect("a next day").and_hms_opt(0, 0, 0).unwrap();
    let to_midnight = (Utc.from_utc_datetime(&tomorrow) - now).num_seconds();
    let retry: i64 = header(&resp, "retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((retry - to_midnight).abs() <= 2, "Retry-After {retry}, seconds to UTC midnight {to_midnight}");
    let reset: i64 = header(&resp, "x-ratelimit-reset").expect("X-RateLimit-Reset").parse().unwrap();
    assert!((reset - to_midnight).abs() <= 2, "X-RateLimit-Reset {reset}, to midnight {to_midnight}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "quota_exceeded");
    assert!(body["detail"].as_str().unwrap().contains("day"), "{body}");
    let u = usage(server, &key).await;
    assert_eq!(used(&u)[1..], [3, 3], "{u}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daily_limit_applies_before_the_minute_limit_embedded() {
    daily_limit_applies_before_the_minute_limit(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daily_limit_applies_before_the_minute_limit_redis() {
    daily_limit_applies_before_the_minute_limit(Backend::Redis).await;
}

// ---------------------------------------------------------------------------------------
// Requests shed with 5xx are not counted

/// A refund of a 5xx needs a detection that fails on the server (a panic outside the
/// detector's guards); no input provokes one without changing the server, so this checks
/// the 5xx the tests can provoke: a request shed with 503 `overloaded` counts nothing.
async fn shed_requests_are_not_counted(backend: Backend) {
    let run = start(backend, |s| {
        s.server.workers = 1;
        s.server.queue = 0;
        s.server.result_cache_entries = 0;
    })
    .await;
    let server = &run.server;
    let key = server.key("premium").await;
    let big = common::encode(&common::picture(3000, 2000), image::ImageFormat::Jpeg);
    let slow = {
        let req = detect_request(server, Some(&key), None, form(big, "big.jpg", None));
        tokio::spawn(async move { req.send().await.expect("answered").status().as_u16() })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.state.pool.running() == 0 {
        assert!(Instant::now() < deadline, "the large detection never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp = detect(server, &key).await;
    assert_eq!(resp.status(), 503, "the only slot is taken");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "overloaded");
    assert_eq!(slow.await.unwrap(), 200);
    let u = usage(server, &key).await;
    assert_eq!(used(&u)[1..], [1, 1], "only the large detection counts: {u}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shed_requests_are_not_counted_embedded() {
    shed_requests_are_not_counted(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shed_requests_are_not_counted_redis() {
    shed_requests_are_not_counted(Backend::Redis).await;
}

// ---------------------------------------------------------------------------------------
// Embedded: counts survive a restart

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_counts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = TestServer::start(settings(dir.path())).await;
    let key = first.key("free").await;
    for i in 0..3 {
        assert_eq!(detect(&first, &key).await.status(), 200, "request {i}");
    }
    first.stop().await;
    drop(first);

    let second = TestServer::start(settings(dir.path())).await;
    let u = usage(&second, &key).await;
    assert_eq!(used(&u)[1..], [3, 3], "day and month after the restart: {u}");
    assert_eq!(sources(&u, "month")["api"], 3);
    let resp = detect(&second, &key).await;
    assert_eq!(resp.status(), 200, "the key still works");
    let u = usage(&second, &key).await;
    assert_eq!(used(&u)[1..], [4, 4], "{u}");
}

// ---------------------------------------------------------------------------------------
// Redis outages

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_with_allow_serves_from_the_fallback_and_recovers() {
    const L: u64 = 4;
    let mut redis = RedisServer::start();
    let server = TestServer::redis_with(&redis.url(), |s| free_limits(s, L, 1000, 1000)).await;
    let key = server.key("free").await;
    // one request verifies the key, which the server then keeps cached (30 s)
    assert_eq!(detect(&server, &key).await.status(), 200);
    assert_eq!(used(&usage(&server, &key).await), [1, 1, 1]);
    assert_eq!(
        metric(&metrics(&server).await, "tellscan_quota_decisions_total{decision=\"store_error\"}"),
        0.0
    );

    redis.stop();
    let minute_before = minute_id();
    let mut statuses = Vec::new();
    for _ in 0..L + 2 {
        let resp = detect(&server, &key).await;
        let status = resp.status().as_u16();
        if status == 429 {
            assert!(header(&resp, "retry-after").is_some(), "429 from the fallback carries Retry-After");
        }
        statuses.push(status);
    }
    let same_minute = minute_id() == minute_before;
    let ok = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "statuses while Redis is down: {statuses:?}");
    if same_minute {
        assert_eq!(ok, L, "the fallback admits the per-minute limit: {statuses:?}");
    } else {
        assert!(ok <= 2 * L, "the fallback admits at most the per-minute limit per minute: {statuses:?}");
    }
    let m = metrics(&server).await;
    let errors = metric(&m, "tellscan_quota_decisions_total{decision=\"store_error\"}");
    assert_eq!(errors, (L + 2) as f64, "store errors counted:\n{m}");
    let (status, h) = health(&server).await;
    assert_eq!(status, 200, "allow keeps /health at 200: {h}");
    assert_eq!(h["store"]["connected"], false, "{h}");
    assert_eq!(h["store"]["kind"], "redis");
    assert_eq!(h["status"], "degraded");
    let resp = usage_request(&server, Some(&key)).send().await.unwrap();
    assert_eq!(resp.status(), 503, "usage needs the store");

    redis.restart();
    // the fresh redis-server has no data: counting starts again from 0
    let deadline = Instant::now() + Duration::from_secs(5);
    let fresh = loop {
        let resp = usage_request(&server, Some(&key)).send().await.unwrap();
        if resp.status() == 200 {
            break resp.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "usage still fails 5 s after Redis came back: {}", resp.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(used(&fresh)[1..], [0, 0], "{fresh}");
    for i in 0..2 {
        assert_eq!(detect(&server, &key).await.status(), 200, "request {i} after the restart");
    }
    let u = usage(&server, &key).await;
    assert_eq!(used(&u)[1..], [2, 2], "requests are counted in Redis again: {u}");
    let (status, h) = health(&server).await;
    assert_eq!((status, h["store"]["connected"].clone()), (200, Value::Bool(true)), "{h}");
    let m = metrics(&server).await;
    assert_eq!(metric(&m, "tellscan_quota_decisions_total{decision=\"store_error\"}"), errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_with_deny_answers_503_and_recovers() {
    let mut redis = RedisServer::start();
    let server = TestServer::redis_with(&redis.url(), |s| s.quota.on_store_error = OnStoreError::Deny).await;
    let key = server.key("free").await;
    assert_eq!(detect(&server, &key).await.status(), 200);
    assert_eq!(health(&server).await.0, 200);

    redis.stop();
    let resp = detect(&server, &key).await;
    assert_eq!(resp.status(), 503);
    let retry: u64 = header(&resp, "retry-after").expect("503 carries Retry-After").parse().unwrap();
    assert!(retry >= 1);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable", "{body}");
    let (status, h) = health(&server).await;
    assert_eq!(status, 503, "deny: /health fails with the store: {h}");
    assert_eq!(h["store"]["connected"], false);
    let m = metrics(&server).await;
    assert_eq!(metric(&m, "tellscan_quota_decisions_total{decision=\"store_error\"}"), 1.0, "{m}");

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = detect(&server, &key).await;
        if resp.status() == 200 {
            break;
        }
        assert_eq!(resp.status(), 503, "while reconnecting");
        assert!(Instant::now() < deadline, "still 503 5 s after Redis came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health(&server).await.0, 200);
    let u = usage(&server, &key).await;
    assert_eq!(used(&u)[1..], [1, 1], "counted in the fresh Redis: {u}");
    assert_eq!(u["windows"]["month"]["limit"], 1000);
}
