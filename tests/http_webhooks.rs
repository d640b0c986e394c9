//! Webhooks over real HTTP on both stores: the account's secret, callback checks at
//! submission, signed deliveries retried with backoff until a 2xx, the outcome of every
//! attempt in the poll body, and giving up after the configured attempts.
mod common;

use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::redis::RedisServer;
use common::server::{client, poll_analysis, small_jpeg, status_json, submit_analyses, TestServer};
use serde_json::Value;
use tellscan::config::Settings;
use tellscan::outbound::signature::{verify, SignatureError};

/// Loopback receivers allowed, quick retries.
fn webhook_settings(s: &mut Settings) {
    s.analyses.allowed_networks = vec!["127.0.0.0/8".into()];
    s.analyses.webhook_backoff_ms = 150;
    s.analyses.webhook_attempts = 4;
    s.analyses.webhook_timeout_secs = 5;
}

async fn create_secret(server: &TestServer, key: &str) -> (u16, Value) {
    let resp = client()
        .post(server.url("/api/v1/webhooks/secret"))
        .header("x-api-key", key)
        .send()
        .await
        .expect("answered");
    status_json(resp).await
}

async fn submit(server: &TestServer, key: &str, callback_url: Option<&str>) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(small_jpeg()).file_name("hook.jpg");
    let mut form = reqwest::multipart::Form::new().part("file", part).text("external_id", "ext-7");
    if let Some(url) = callback_url {
        form = form.text("callback_url", url.to_string());
    }
    submit_analyses(server, key, form).await
}

async fn poll(server: &TestServer, key: &str, id: &str) -> Value {
    let (status, body) = poll_analysis(server, key, id).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Poll until the webhook is no longer pending.
async fn poll_until_webhook_settles(server: &TestServer, key: &str, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let body = poll(server, key, id).await;
        if body["webhook"]["status"] != "pending" {
            return body;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the webhook did not settle: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{text}"))
}

async fn metrics(server: &TestServer) -> String {
    client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

async fn delivered_on_the_third_attempt(server: TestServer) {
    let key = server.key("enterprise").await;
    let receiver = Receiver::start(vec![500, 500, 200]).await;
    let callback = receiver.url("/hooks/tellscan?src=test");

    // a callback needs a secret to sign with: a state conflict until the account has one
    let (status, body) = submit(&server, &key, Some(&callback)).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("webhook_secret_missing")), "{body}");
    let (status, created) = create_secret(&server, &key).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_") && secret.len() == 6 + 64, "{secret}");
    assert!(created["account_id"].as_str().is_some_and(|a| a.len() == 16));

    let (status, body) = submit(&server, &key, Some(&callback)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["webhook"]["status"], "pending");
    assert_eq!(body["webhook"]["callback_url"], callback);
    let id = body["id"].as_str().expect("id").to_string();

    let done = poll_until_webhook_settles(&server, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let webhook = &done["webhook"];
    assert_eq!(webhook["status"], "delivered", "{done}");
    let deliveries = webhook["deliveries"].as_array().expect("deliveries");
    let attempts: Vec<_> = deliveries.iter().map(|d| (d["attempt"].as_u64(), d["status"].as_u64())).collect();
    assert_eq!(attempts, [(Some(1), Some(500)), (Some(2), Some(500)), (Some(3), Some(200))]);
    assert!(deliveries[0]["error"].as_str().is_some_and(|e| e.contains("500")));
    assert!(deliveries[2]["error"].is_null());

    let hits = receiver.hits();
    assert_eq!(hits.len(), 3, "two failures and the success, nothing more");
    let now = chrono::Utc::now().timestamp();
    for (n, hit) in hits.iter().enumerate() {
        let signature = &hit.headers["x-tellscan-signature"];
        assert_eq!(verify(secret.as_bytes(), signature, &hit.body, now, 300), Ok(()), "attempt {n}");
        assert_eq!(hit.headers["x-tellscan-delivery"], format!("whd_{id}"), "the same on every attempt");
        assert_eq!(hit.headers["x-tellscan-attempt"], (n + 1).to_string());
        assert_eq!(hit.headers["x-tellscan-event"], "analysis.completed");
        assert_eq!(hit.headers["content-type"], "application/json");
        assert_eq!(hit.body, hits[0].body, "every attempt sends the same bytes");
    }
    // backoff: 150 ms, then 300 ms (lower bounds only: the sender may be later, never earlier)
    assert!(hits[1].at - hits[0].at >= Duration::from_millis(140), "{:?}", hits[1].at - hits[0].at);
    assert!(hits[2].at - hits[1].at >= Duration::from_millis(290), "{:?}", hits[2].at - hits[1].at);

    // the body is the poll body without the delivery bookkeeping
    let sent: Value = serde_json::from_slice(&hits[0].body).expect("JSON body");
    let mut expected = done.clone();
    expected.as_object_mut().unwrap().remove("webhook");
    assert_eq!(sent, expected);

    // a bad signature is detectable: another secret, a changed body, an old timestamp
    let signature = &hits[2].headers["x-tellscan-signature"];
    assert_eq!(
        verify(b"whsec_not-the-secret", signature, &hits[2].body, now, 300),
        Err(SignatureError::Mismatch)
    );
    let mut tampered = hits[2].body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(verify(secret.as_bytes(), signature, &tampered, now, 300), Err(SignatureError::Mismatch));
    assert_eq!(
        verify(secret.as_bytes(), signature, &hits[2].body, now + 3600, 300),
        Err(SignatureError::Stale)
    );
    assert_eq!(verify(secret.as_bytes(), "v1=00", &hits[2].body, now, 300), Err(SignatureError::Malformed));

    let text = metrics(&server).await;
    assert_eq!(metric(&text, "tellscan_webhook_attempts_total"), 3.0);
    assert_eq!(metric(&text, "tellscan_webhook_failures_total"), 2.0);
    assert_eq!(metric(&text, "tellscan_analyses_submitted_total"), 1.0);
    assert_eq!(metric(&text, "tellscan_analyses_completed_total"), 1.0);
    assert_eq!(metric(&text, "tellscan_analyses_failed_total"), 0.0);
    assert_eq!(metric(&text, "tellscan_analyses_queued"), 0.0);
    assert_eq!(metric(&text, "tellscan_analyses_processing"), 0.0);

    // a rotated secret signs from now on; the old one no longer verifies
    let (_, rotated) = create_secret(&server, &key).await;
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let again = Receiver::start(vec![204]).await;
    let (_, body) = submit(&server, &key, Some(&again.url("/"))).await;
    let done = poll_until_webhook_settles(&server, &key, body["id"].as_str().unwrap()).await;
    assert_eq!(done["webhook"]["status"], "delivered", "{done}");
    let hit = &again.hits()[0];
    let signature = &hit.headers["x-tellscan-signature"];
    let now = chrono::Utc::now().timestamp();
    assert_eq!(verify(new_secret.as_bytes(), signature, &hit.body, now, 300), Ok(()));
    assert_eq!(verify(secret.as_bytes(), signature, &hit.body, now, 300), Err(SignatureError::Mismatch));
}

async fn gives_up_after_the_configured_attempts(server: TestServer) {
    let key = server.key("enterprise").await;
    create_secret(&server, &key).await;
    let receiver = Receiver::start(vec![503]).await;
    let (status, body) = submit(&server, &key, Some(&receiver.url("/down"))).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let done = poll_until_webhook_settles(&server, &key, &id).await;
    assert_eq!(done["webhook"]["status"], "failed", "{done}");
    assert_eq!(done["webhook"]["deliveries"].as_array().map(Vec::len), Some(4));
    // nothing more is sent once given up
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.hits().len(), 4);
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "tellscan_webhook_failures_total"), 4.0);
}

async fn callback_urls_are_checked_at_submission(server: TestServer) {
    let key = server.key("enterprise").await;
    create_secret(&server, &key).await;
    for (url, code) in [
        ("http://10.1.2.3/hook", "callback_url_refused"),
        ("http://[::ffff:192.168.0.1]/hook", "callback_url_refused"),
        ("http://169.254.169.254/latest/meta-data", "callback_url_refused"),
        ("ftp://example.com/hook", "invalid_callback_url"),
        ("not a url", "invalid_callback_url"),
    ] {
        let (status, body) = submit(&server, &key, Some(url)).await;
        assert_eq!((status, body["error"].as_str()), (422, Some(code)), "{url}: {body}");
    }
    // a submission without a callback has no webhook section
    let (status, body) = submit(&server, &key, None).await;
    assert_eq!(status, 202, "{body}");
    assert!(body.get("webhook").is_none(), "{body}");
}

macro_rules! on_both_stores {
    ($($check:ident),* $(,)?) => {
        mod embedded_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    super::$check(super::TestServer::embedded_with(super::webhook_settings).await).await;
                }
            )*
        }
        mod redis_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let redis = super::RedisServer::start();
                    super::$check(super::TestServer::redis_with(&redis.url(), super::webhook_settings).await).await;
                }
            )*
        }
    };
}

on_both_stores!(
    delivered_on_the_third_attempt,
    gives_up_after_the_configured_attempts,
    callback_urls_are_checked_at_submission,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbacks_to_loopback_are_refused_under_the_default_policy() {
    let server = TestServer::embedded().await;
    let key = server.key("enterprise").await;
    create_secret(&server, &key).await;
    let receiver = Receiver::start(vec![200]).await;
    let (status, body) = submit(&server, &key, Some(&receiver.url("/"))).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("callback_url_refused")), "{body}");
    // a name passes at submission (it is resolved when connecting) and the resolver refuses
    // the delivery
    let (status, body) = submit(&server, &key, Some(&format!("http://localhost:{}/", receiver.port))).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    loop {
        let body = poll(&server, &key, &id).await;
        let deliveries = body["webhook"]["deliveries"].as_array().cloned().unwrap_or_default();
        if let Some(first) = deliveries.first() {
            assert!(first["status"].is_null(), "{body}");
            assert!(first["error"].as_str().is_some_and(|e| e.contains("refused")), "{body}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no attempt recorded: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.hits().is_empty(), "the receiver saw no request");
}
