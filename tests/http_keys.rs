//! API keys over real HTTP and through `tellscan keys`: refusal of revoked, disabled, rotated,
//! wrong, unknown and malformed keys (and what each costs in argon2 runs), the verification
//! cache, no plaintext key in the stores or the logs, the key-management CLI on both stores,
//! and graceful shutdown of an in-flight detection.
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::server::{
    admin_request, client, detect_request, form, key_id, key_secret, settings, small_jpeg, status_json,
    usage_request, TestServer, ADMIN_TOKEN,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Fixtures

/// `GET /api/usage/status` with `key` (consumes no quota): status and body.
async fn usage(server: &TestServer, key: &str) -> (u16, Value) {
    status_json(usage_request(server, Some(key)).send().await.expect("usage answered")).await
}

/// `POST /api/detect` with the small JPEG: status and body.
async fn detect(server: &TestServer, key: &str) -> (u16, Value) {
    let form = form(small_jpeg(), "a.jpg", None);
    status_json(detect_request(server, Some(key), None, form).send().await.expect("detect answered")).await
}

/// Assert a 401 with `code` from both keyed routes.
async fn assert_refused(server: &TestServer, key: &str, code: &str) {
    let (status, body) = usage(server, key).await;
    assert_eq!((status, body["error"].as_str()), (401, Some(code)), "usage with a refused key: {body}");
    let (status, body) = detect(server, key).await;
    assert_eq!((status, body["error"].as_str()), (401, Some(code)), "detect with a refused key: {body}");
}

/// An admin call with the admin token: method, path, optional JSON body → status and body.
async fn admin(server: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let req = admin_request(server, method, path, body, Some(ADMIN_TOKEN));
    status_json(req.send().await.expect("admin call answered")).await
}

/// Create a key through the admin API: (full key, id).
async fn admin_create(server: &TestServer, name: &str, tier: &str) -> (String, String) {
    let (status, body) =
        admin(server, "POST", "/admin/keys", Some(json!({"name": name, "tier": tier}))).await;
    assert_eq!(status, 201, "create: {body}");
    let key = body["key"].as_str().expect("key").to_string();
    let id = body["record"]["id"].as_str().expect("record.id").to_string();
    assert!(is_key(&key), "{key}");
    assert_eq!(key_id(&key), id);
    (key, id)
}

/// Rotate through the admin API: the new full key.
async fn admin_rotate(server: &TestServer, id: &str) -> String {
    let (status, body) = admin(server, "POST", &format!("/admin/keys/{id}/rotate"), None).await;
    assert_eq!(status, 200, "rotate: {body}");
    let key = body["key"].as_str().expect("key").to_string();
    assert_eq!(key_id(&key), id, "rotation keeps the id");
    key
}

/// Whether `s` is `imag_<16 lower hex>_<64 lower hex>`.
fn is_key(s: &str) -> bool {
    let lower_hex =
        |p: &str, n: usize| p.len() == n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match s.strip_prefix("imag_").and_then(|r| r.split_once('_')) {
        Some((id, secret)) => lower_hex(id, 16) && lower_hex(secret, 64),
        None => false,
    }
}

/// A well-formed key with a fresh random secret for `id`.
fn forged(id: &str) -> String {
    let secret: String = (0..4).map(|_| format!("{:016x}", rand_u64())).collect();
    format!("imag_{id}_{secret}")
}

/// A random-enough id nobody created.
fn unknown_id() -> String {
    format!("{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.finish()
}

/// Assert that `haystack` holds none of the keys nor their secrets.
fn assert_no_plaintext(haystack: &[u8], keys: &[String], what: &str) {
    let contains = |needle: &str| haystack.windows(needle.len()).any(|w| w == needle.as_bytes());
    for key in keys {
        assert!(!contains(key), "{what} contains the full key {key}");
        assert!(!contains(key_secret(key)), "{what} contains the secret of key {}", key_id(key));
    }
}

// ---------------------------------------------------------------------------------------
// Refusals and what they cost

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_and_disabled_keys_are_refused() {
    let server = TestServer::embedded().await;
    let (key, id) = admin_create(&server, "lifecycle", "free").await;
    assert_eq!(usage(&server, &key).await.0, 200, "a fresh key works (and is now cached)");

    let (status, body) = admin(&server, "POST", &format!("/admin/keys/{id}/disable"), None).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("disabled")), "{body}");
    assert_refused(&server, &key, "disabled_api_key").await;
    let (status, body) = admin(&server, "POST", &format!("/admin/keys/{id}/enable"), None).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("active")), "{body}");
    assert_eq!(detect(&server, &key).await.0, 200, "enabled again");

    let (status, body) =
        admin(&server, "PUT", &format!("/admin/keys/{id}/tier"), Some(json!({"tier": "premium"}))).await;
    assert_eq!((status, body["tier"].as_str()), (200, Some("premium")), "{body}");
    let (status, u) = usage(&server, &key).await;
    assert_eq!((status, u["tier"].as_str()), (200, Some("premium")), "the new tier applies at once: {u}");
    assert_eq!(u["windows"]["minute"]["limit"], 30);

    let (status, body) = admin(&server, "POST", &format!("/admin/keys/{id}/revoke"), None).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("revoked")), "{body}");
    assert_refused(&server, &key, "revoked_api_key").await;
    let (status, body) = admin(&server, "POST", &format!("/admin/keys/{id}/enable"), None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("key_revoked")), "revocation is final: {body}");
    assert_refused(&server, &key, "revoked_api_key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_key_old_secret_fails_and_the_new_one_works() {
    let server = TestServer::embedded().await;
    let (old, id) = admin_create(&server, "rotating", "free").await;
    assert_eq!(detect(&server, &old).await.0, 200, "before rotation (cached now)");
    let new = admin_rotate(&server, &id).await;
    assert_ne!(key_secret(&new), key_secret(&old));
    assert_refused(&server, &old, "invalid_api_key").await;
    let (status, body) = detect(&server, &new).await;
    assert_eq!(status, 200, "{body}");
    let (_, u) = usage(&server, &new).await;
    assert_eq!(u["key_id"], id.as_str());
    assert_eq!(u["windows"]["day"]["used"], 2, "rotation keeps the key's counts: {u}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_costs_one_argon2_run_then_is_remembered() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;
    let wrong = forged(key_id(&key));
    let runs = server.state.keys.argon2_runs();
    let (status, body) = usage(&server, &wrong).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_api_key")), "{body}");
    assert_eq!(server.state.keys.argon2_runs(), runs + 1, "one verification for the wrong secret");
    for _ in 0..5 {
        assert_refused(&server, &wrong, "invalid_api_key").await;
    }
    assert_eq!(server.state.keys.argon2_runs(), runs + 1, "a repeated wrong key is refused from the cache");
    // the right key is not poisoned by the refusal of a wrong one
    assert_eq!(usage(&server, &key).await.0, 200);
    assert_eq!(server.state.keys.argon2_runs(), runs + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_id_never_runs_argon2() {
    let server = TestServer::embedded().await;
    let _real = server.key("free").await;
    let runs = server.state.keys.argon2_runs();
    let unknown = forged(&unknown_id());
    for i in 0..20 {
        // a different unknown key every other time, so no cached refusal hides a run
        let key = if i % 2 == 0 { unknown.clone() } else { forged(&unknown_id()) };
        let (status, body) = usage(&server, &key).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_api_key")), "{body}");
    }
    assert_eq!(server.state.keys.argon2_runs(), runs, "unknown ids are refused without argon2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_key_never_runs_argon2() {
    let server = TestServer::embedded().await;
    let real = server.key("free").await;
    let id = key_id(&real);
    let runs = server.state.keys.argon2_runs();
    let malformed = [
        "nonsense".to_string(),
        "imag_".to_string(),
        "imag_abc".to_string(),
        format!("img_{}", &real[5..]),
        format!("imag_{}_{}", id.to_uppercase(), key_secret(&real)),
        format!("imag_{id}_{}", &key_secret(&real)[..63]),
        format!("imag_{id}_{}z", &key_secret(&real)[..63]),
        format!("imag_{id}_{}00", key_secret(&real)),
        format!("imag_{id}"),
    ];
    for key in &malformed {
        let (status, body) = usage(&server, key).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_api_key")), "{key}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("malformed"), "{key}: {body}");
    }
    let resp = usage_request(&server, None).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "missing_api_key");
    assert_eq!(server.state.keys.argon2_runs(), runs, "malformed keys are refused without argon2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verified_key_is_cached() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;
    let runs = server.state.keys.argon2_runs();
    for i in 0..20 {
        // mix the two keyed routes; detections beyond the minute limit answer 429, still keyed
        let status = if i % 2 == 0 { usage(&server, &key).await.0 } else { detect(&server, &key).await.0 };
        assert!(status == 200 || status == 429, "request {i}: {status}");
    }
    assert_eq!(server.state.keys.argon2_runs(), runs + 1, "one argon2 run for 20 requests");
    let m = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line =
        m.lines().find(|l| l.starts_with("tellscan_argon2_verifications_total")).expect("argon2 metric");
    assert!(line.ends_with(&format!(" {}", runs + 1)), "{line}");
}

/// DESIGN §3: argon2 "runs once per key per cache period". A burst of first requests with
/// one key must not verify it once per request (each run costs ~20 ms of CPU and 19 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_first_requests_with_one_key_runs_argon2_once() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;
    let runs = server.state.keys.argon2_runs();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let req = usage_request(&server, Some(&key));
            tokio::spawn(async move { req.send().await.unwrap().status() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let ran = server.state.keys.argon2_runs() - runs;
    assert_eq!(ran, 1, "20 concurrent first requests with one key ran argon2 {ran} times");
}

// ---------------------------------------------------------------------------------------
// No plaintext key anywhere

/// Create two keys through the admin API, rotate one, use all of them (old ones refused):
/// every plaintext key that ever existed, and the ids.
async fn key_traffic(server: &TestServer) -> (Vec<String>, Vec<String>) {
    let (a, a_id) = admin_create(server, "alpha", "free").await;
    let (b, b_id) = admin_create(server, "beta", "premium").await;
    let c = server.key("enterprise").await;
    for k in [&a, &b, &c] {
        assert_eq!(detect(server, k).await.0, 200);
    }
    let a2 = admin_rotate(server, &a_id).await;
    assert_eq!(detect(server, &a2).await.0, 200);
    assert_eq!(detect(server, &a).await.0, 401);
    let wrong = forged(&b_id);
    assert_eq!(detect(server, &wrong).await.0, 401);
    assert_eq!(usage(server, &b).await.0, 200);
    let (status, body) = admin(server, "GET", "/admin/keys", None).await;
    assert_eq!(status, 200);
    let listed = body.to_string();
    let keys = vec![a, a2, b, c.clone(), wrong];
    assert_no_plaintext(listed.as_bytes(), &keys, "GET /admin/keys");
    (keys, vec![a_id, b_id, key_id(&c).to_string()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_store_holds_no_plaintext_key() {
    let mut server = TestServer::embedded().await;
    let (keys, ids) = key_traffic(&server).await;
    let path = server.dir.as_ref().expect("data dir").path().join("tellscan.redb");
    let check = |when: &str| {
        let bytes = std::fs::read(&path).expect("the store file");
        let text = String::from_utf8_lossy(&bytes);
        // the records are there, readable, so the search below looks at the right data
        for id in &ids {
            assert!(text.contains(id.as_str()), "{when}: the store file lacks id {id}");
        }
        assert!(text.contains("$argon2id$"), "{when}: the store file lacks the secret hashes");
        assert_no_plaintext(&bytes, &keys, &format!("the store file ({when})"));
    };
    check("while serving");
    server.stop().await;
    check("after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_holds_no_plaintext_key() {
    let redis = RedisServer::start();
    let server = TestServer::redis_with(&redis.url(), |_| {}).await;
    let (keys, ids) = key_traffic(&server).await;

    let redis_client = redis::Client::open(redis.url()).expect("client");
    let mut conn = redis_client.get_multiplexed_async_connection().await.expect("connection");
    let names: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.expect("KEYS");
    assert!(names.len() > ids.len(), "records, index and counters: {names:?}");
    let mut dump = String::new();
    for name in &names {
        dump.push_str(name);
        dump.push('\n');
        let kind: String = redis::cmd("TYPE").arg(name).query_async(&mut conn).await.expect("TYPE");
        let values: Vec<String> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(name).query_async(&mut conn).await.expect("GET")],
            "hash" => redis::cmd("HGETALL").arg(name).query_async(&mut conn).await.expect("HGETALL"),
            "set" => redis::cmd("SMEMBERS").arg(name).query_async(&mut conn).await.expect("SMEMBERS"),
            "list" => {
                redis::cmd("LRANGE").arg(name).arg(0).arg(-1).query_async(&mut conn).await.expect("LRANGE")
            }
            "zset" => {
                redis::cmd("ZRANGE").arg(name).arg(0).arg(-1).query_async(&mut conn).await.expect("ZRANGE")
            }
            other => panic!("unexpected Redis type {other} of {name}"),
        };
        for v in values {
            dump.push_str(&v);
            dump.push('\n');
        }
    }
    for id in &ids {
        assert!(dump.contains(&format!("tellscan:key:{id}")), "no record of {id} in Redis:\n{dump}");
    }
    assert!(dump.contains("$argon2id$"), "the records hold the hashes:\n{dump}");
    assert_no_plaintext(dump.as_bytes(), &keys, "Redis");
    drop(server);
}

/// The log buffer of this test binary: a TRACE subscriber installed once, writing here.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || SharedWriter(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        buffer
    })
    .clone()
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_hold_no_plaintext_key() {
    let logs = captured_logs();
    let mut redis = RedisServer::start();
    let server = TestServer::redis_with(&redis.url(), |_| {}).await;
    let (mut keys, ids) = key_traffic(&server).await;
    let (d, d_id) = admin_create(&server, "delta", "free").await;
    assert_eq!(detect(&server, &d).await.0, 200);
    let (status, _) = admin(&server, "POST", &format!("/admin/keys/{d_id}/disable"), None).await;
    assert_eq!(status, 200);
    assert_eq!(detect(&server, &d).await.0, 401);
    let (status, _) = admin(&server, "POST", &format!("/admin/keys/{d_id}/revoke"), None).await;
    assert_eq!(status, 200);
    assert_eq!(detect(&server, &d).await.0, 401);
    keys.push(d);
    // a store outage makes the server log warnings about the (cached) key
    let e = admin_create(&server, "epsilon", "free").await.0;
    assert_eq!(detect(&server, &e).await.0, 200);
    redis.stop();
    assert_eq!(detect(&server, &e).await.0, 200, "allow: served from the fallback");
    keys.push(e);
    drop(server);

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("key created"), "the server's logs were captured ({} bytes)", text.len());
    assert!(text.contains(&ids[0]), "key ids appear in the logs");
    assert!(text.contains("quota store error"), "the outage was logged");
    assert_no_plaintext(text.as_bytes(), &keys, "the logs");
}

// ---------------------------------------------------------------------------------------
// The CLI

/// `tellscan` with no configuration from the environment.
fn tellscan() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tellscan"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TELLSCAN_") || name == "REDIS_URL" {
            cmd.env_remove(name);
        }
    }
    cmd.env("RUST_LOG", "error");
    cmd
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn keys_cmd(store: &[&str], args: &[&str]) -> Ran {
    let out = tellscan().arg("keys").args(store).args(args).output().await.expect("tellscan runs");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run a keys command that must succeed.
async fn keys_ok(store: &[&str], args: &[&str]) -> String {
    let ran = keys_cmd(store, args).await;
    assert!(ran.ok, "keys {args:?} failed:\n{}\n{}", ran.stdout, ran.stderr);
    ran.stdout
}

/// The key printed alone on the last line of `stdout`.
fn last_line_key(stdout: &str) -> String {
    let last = stdout.lines().last().expect("output").to_string();
    assert!(is_key(&last), "the last line is not a key alone: {last:?}\n{stdout}");
    last
}

/// The record of `id` in `keys list --json`.
async fn listed(store: &[&str], id: &str) -> Value {
    let out = keys_ok(store, &["list", "--json"]).await;
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("one JSON object per line"))
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_manages_keys_in_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let store = ["--data-dir", d.as_str()];

    let created = keys_ok(&store, &["create", "--tier", "free", "--name", "ci"]).await;
    let first = last_line_key(&created);
    let id = key_id(&first).to_string();
    let table = keys_ok(&store, &["list"]).await;
    assert!(table.contains(&id) && table.contains("ci") && table.contains("free"), "{table}");
    assert_no_plaintext(table.as_bytes(), std::slice::from_ref(&first), "keys list");

    let rotated = keys_ok(&store, &["rotate", &id]).await;
    let key = last_line_key(&rotated);
    assert_eq!(key_id(&key), id);
    assert_ne!(key, first);
    let disabled = keys_ok(&store, &["disable", &id]).await;
    assert!(disabled.contains("disabled"), "{disabled}");
    assert_eq!(listed(&store, &id).await["state"], "disabled");
    keys_ok(&store, &["enable", &id]).await;
    assert_eq!(listed(&store, &id).await["state"], "active");
    keys_ok(&store, &["set-tier", &id, "premium"]).await;
    let record = listed(&store, &id).await;
    assert_eq!(record["tier"], "premium");
    let json_list = keys_ok(&store, &["list", "--json"]).await;
    assert_no_plaintext(json_list.as_bytes(), &[first.clone(), key.clone()], "keys list --json");

    let gold = keys_cmd(&store, &["create", "--tier", "gold", "--name", "ci"]).await;
    assert!(!gold.ok, "an unknown tier is refused");
    for tier in ["gold", "free", "premium", "enterprise"] {
        assert!(gold.stderr.contains(tier), "the error names {tier}: {}", gold.stderr);
    }

    // a server started afterwards on the same directory accepts the CLI's key
    let mut server = TestServer::start(settings(dir.path())).await;
    let (status, u) = usage(&server, &key).await;
    assert_eq!(status, 200, "{u}");
    assert_eq!(u["tier"], "premium");
    assert_eq!(detect(&server, &key).await.0, 200);
    assert_refused(&server, &first, "invalid_api_key").await;
    // while the server holds the store, the CLI points to the admin API
    let locked = keys_cmd(&store, &["list"]).await;
    assert!(!locked.ok, "the CLI cannot open a store the server holds:\n{}", locked.stdout);
    assert!(locked.stderr.contains("/admin/keys"), "stderr names the admin API: {}", locked.stderr);
    server.stop().await;
    drop(server);

    keys_ok(&store, &["revoke", &id]).await;
    assert_eq!(listed(&store, &id).await["state"], "revoked");
    let server = TestServer::start(settings(dir.path())).await;
    assert_refused(&server, &key, "revoked_api_key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_created_by_the_cli_in_redis_works_on_a_server() {
    let redis = RedisServer::start();
    let url = redis.url();
    let store = ["--redis-url", url.as_str()];
    let created = keys_ok(&store, &["create", "--tier", "free", "--name", "ci"]).await;
    let key = last_line_key(&created);
    let server = TestServer::redis_with(&url, |_| {}).await;
    let (status, body) = detect(&server, &key).await;
    assert_eq!(status, 200, "{body}");
    let (_, u) = usage(&server, &key).await;
    assert_eq!(u["windows"]["day"]["used"], 1);
    // Redis is shared: the CLI keeps working while a server runs
    let table = keys_ok(&store, &["list"]).await;
    assert!(table.contains(key_id(&key)), "{table}");
    keys_ok(&store, &["revoke", key_id(&key)]).await;
    // another replica (a fresh server, empty key cache) sees the revocation at once
    let other = TestServer::redis_with(&url, |_| {}).await;
    assert_refused(&other, &key, "revoked_api_key").await;
}

// ---------------------------------------------------------------------------------------
// Graceful shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_lets_an_in_flight_detection_finish() {
    let mut server = TestServer::embedded_with(|s| {
        s.server.result_cache_entries = 0;
        s.server.shutdown_grace_secs = 60;
    })
    .await;
    let key = server.key("free").await;
    let big = common::encode(&common::picture(3000, 2000), image::ImageFormat::Jpeg);
    let in_flight = {
        let req = detect_request(&server, Some(&key), None, form(big, "big.jpg", None));
        tokio::spawn(async move {
            status_json(req.send().await.expect("the in-flight request is answered")).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.state.pool.running() == 0 {
        assert!(Instant::now() < deadline, "the detection never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(server.state.pool.running() > 0, "the detection is still running when the server is stopped");
    let url = server.url("/health");
    server.stop().await;
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["image"]["width"], 3000, "{body}");
    assert!(client().get(url).send().await.is_err(), "the server no longer accepts requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_wrong_secrets_costs_the_limit_in_argon2_runs_and_spares_a_verified_client() {
    use futures_util::StreamExt;
    // the shipped limit (10 wrong secrets a minute); a 1 s cache so the verified client's
    // entry has expired before it comes back
    let server = TestServer::embedded_with(|s| s.keys.cache_ttl_secs = 1).await;
    assert_eq!(
        (server.state.settings.keys.wrong_secret_limit, server.state.settings.keys.wrong_secret_window_secs),
        (10, 60)
    );
    let key = server.key("free").await;
    let newcomer = server.key("free").await;
    assert_eq!(usage(&server, &key).await.0, 200, "the client verifies its key before the flood");
    let runs = server.state.keys.argon2_runs();

    // 1,000 different wrong secrets against the one id, 16 at a time
    let refusals: Vec<(u16, Option<String>)> = futures_util::stream::iter(0..1000)
        .map(|_| {
            let wrong = forged(key_id(&key));
            let server = &server;
            async move {
                let (status, body) = usage(server, &wrong).await;
                (status, body["error"].as_str().map(str::to_string))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        refusals.iter().all(|r| *r == (401, Some("invalid_api_key".to_string()))),
        "every wrong secret is a plain 401"
    );
    assert_eq!(server.state.keys.argon2_runs() - runs, 10, "argon2 ran for the first 10 wrong secrets only");

    // the client verified before the flood keeps working, also once its cache entry expired,
    // and without argon2 (the same secret against the same stored hash)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = detect(&server, &key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.state.keys.argon2_runs() - runs, 10);

    let m = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("tellscan_auth_flood_refusals_total 990"), "{m}");
    assert!(m.contains("tellscan_argon2_verifications_total"), "{m}");

    // another id is not affected; once it is flooded, even its right key waits for the window
    // when this replica never verified it (no argon2 either)
    for _ in 0..10 {
        assert_eq!(usage(&server, &forged(key_id(&newcomer))).await.0, 401);
    }
    let runs = server.state.keys.argon2_runs();
    let (status, body) = usage(&server, &newcomer).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_api_key")), "{body}");
    assert_eq!(server.state.keys.argon2_runs(), runs);
}
