//! The HTTP contract of DESIGN.md §2 and §3, over real HTTP on the embedded store: every
//! status the API answers with, its error code, the quota headers, what counts against a
//! quota and what does not, the service routes, the committed OpenAPI spec and the admin API.
//!
//! Every server listens on 127.0.0.1; nothing here connects anywhere else.
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use common::server::{
    admin_request, away_from_minute_edge, client, detect_request, form, key_id, key_secret,
    ms_left_in_minute, small_jpeg, usage_request, used, TestServer, ADMIN_TOKEN,
};
use common::{encode, jpeg_with_segment, picture, read_fixture};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tellscan::auth::key::Tier;
use tellscan::quota::TierLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// The quota headers: present on every answer to a valid key, absent on 401.
const QUOTA_HEADERS: [&str; 5] =
    ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit-policy", "ratelimit"];

/// The five verdict bands of DESIGN.md §2.
const VERDICTS: [&str; 5] =
    ["AI generated", "Likely AI generated", "Uncertain", "Likely authentic", "Authentic"];

/// The modules every report carries.
const MODULES: [&str; 7] = ["metadata", "provenance", "frequency", "visual", "physics", "ml", "fusion"];

/// `RateLimit-Policy` of the default free tier.
const FREE_POLICY: &str = "\"minute\";q=10;w=60, \"day\";q=50;w=86400, \"month\";q=1000;w=2592000";

/// One answer, read completely.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("response body reads");
        Reply { status, headers, text }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("header is text"))
    }

    /// A header that must be there.
    fn must(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("header {name} missing; status {}, body {}", self.status, self.text))
    }

    fn num(&self, name: &str) -> u64 {
        let v = self.must(name);
        v.parse().unwrap_or_else(|_| panic!("header {name} is not a number: {v:?}"))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}); status {}: {}", self.status, self.text))
    }

    /// Assert a 200 and return the JSON body.
    fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "expected 200, got {}: {}", self.status, self.text);
        self.json()
    }

    /// Assert the error shape `{"error": code, "detail": sentence}` with this status; returns
    /// the detail.
    fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "expected {status} {code}, got {}: {}", self.status, self.text);
        self.shape();
        let body = self.json();
        assert_eq!(body["error"], code, "wrong error code for a {status}: {}", self.text);
        body["detail"].as_str().unwrap().to_string()
    }

    /// Assert the error shape only: a JSON object with exactly `error` and `detail` strings.
    fn shape(&self) -> Value {
        let content_type = self.must("content-type");
        assert!(
            content_type.starts_with("application/json"),
            "error is not JSON ({content_type}): {}",
            self.text
        );
        let body = self.json();
        let object = body.as_object().unwrap_or_else(|| panic!("error body is not an object: {}", self.text));
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["detail", "error"], "error body has other fields: {}", self.text);
        assert!(!body["error"].as_str().expect("error is a string").is_empty());
        assert!(!body["detail"].as_str().expect("detail is a string").trim().is_empty());
        body
    }

    fn assert_no_quota_headers(&self) {
        for name in QUOTA_HEADERS {
            assert!(
                self.header(name).is_none(),
                "a {} answer carries {name}: {:?}",
                self.status,
                self.header(name)
            );
        }
    }

    fn assert_quota_headers(&self) {
        for name in QUOTA_HEADERS {
            assert!(self.header(name).is_some(), "a {} answer lacks {name}: {}", self.status, self.text);
        }
    }
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    Reply::read(request.send().await.expect("request is answered")).await
}

/// `POST /api/detect` with an optional key and `x-detection-source`.
async fn detect(
    server: &TestServer,
    key: Option<&str>,
    source: Option<&str>,
    form: reqwest::multipart::Form,
) -> Reply {
    send(detect_request(server, key, source, form)).await
}

/// `GET /api/usage/status` with a key; asserts 200.
async fn usage(server: &TestServer, key: &str) -> Value {
    send(usage_request(server, Some(key))).await.ok()
}

/// Requests counted today for a key (the day window, so a minute boundary cannot interfere).
async fn used_today(server: &TestServer, key: &str) -> u64 {
    used(&usage(server, key).await)[1]
}

/// An admin API call with `Authorization: Bearer <token>` when a token is given.
async fn admin(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Reply {
    send(admin_request(server, method, path, body, token)).await
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    hex::encode(digest)
}

/// Seconds (rounded up) until the current UTC minute ends, as the server computes them.
fn secs_left_in_minute() -> u64 {
    ms_left_in_minute().div_ceil(1000)
}

/// Seconds (rounded up) until the next UTC midnight.
fn secs_to_midnight() -> u64 {
    let now = Utc::now();
    let midnight = (now.date_naive() + chrono::Days::new(1)).and_hms_opt(0, 0, 0).unwrap().and_utc();
    ((midnight - now).num_milliseconds().max(0) as u64).div_ceil(1000)
}

/// `|a - b| <= tolerance`.
fn close(a: u64, b: u64, tolerance: u64) -> bool {
    a.abs_diff(b) <= tolerance
}

/// A real JPEG of exactly `size` bytes (the small JPEG padded with comment segments).
fn jpeg_of_size(size: usize) -> Vec<u8> {
    let mut out = small_jpeg();
    assert!(out.len() + 8 < size, "the base JPEG is already {} bytes", out.len());
    while out.len() < size {
        let need = size - out.len();
        let payload = if need > 65_537 { 60_000 } else { need - 4 };
        out = jpeg_with_segment(&out, 0xFE, &vec![b'x'; payload]);
    }
    assert_eq!(out.len(), size);
    out
}

/// A tier map like the defaults, with `free` replaced.
fn free_tier(s: &mut tellscan::config::Settings, limits: TierLimits) {
    s.quota.tiers.insert(Tier::parse("free").unwrap(), limits);
}

/// How a hand-written upload frames its body.
#[derive(Clone, Copy)]
enum Framing {
    /// `Transfer-Encoding: chunked`, no `Content-Length`, the whole body in 16 KiB chunks.
    Chunked,
    /// A true `Content-Length`, but only the first `sent` bytes of the body are written (the
    /// connection stays open, so the server can only answer from the declared length).
    Declared { sent: usize },
    /// A true `Content-Length` and the whole body, in 64 KiB writes that must all succeed:
    /// a server that answers early and closes makes one fail with a reset.
    Whole,
}

/// Send a multipart upload of `file` by hand, reading the answer while the body is still
/// being written. Returns the status and the JSON body (`Null` when there is none).
async fn raw_upload(addr: SocketAddr, key: &str, file: &[u8], framing: Framing) -> (u16, Value) {
    assert!(addr.ip().is_loopback());
    let boundary = "tellscan-contract-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let length = match framing {
        Framing::Chunked => "Transfer-Encoding: chunked".to_string(),
        Framing::Declared { .. } | Framing::Whole => format!("Content-Length: {}", body.len()),
    };
    let head = format!(
        "POST /api/detect HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {key}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n{length}\r\nConnection: close\r\n\r\n"
    );
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connects to the test server");
    let (mut reader, mut writer) = stream.into_split();
    let read = tokio::spawn(async move {
        let mut response = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
        response
    });
    writer.write_all(head.as_bytes()).await.expect("request head is written");
    match framing {
        Framing::Chunked => {
            for chunk in body.chunks(16 * 1024) {
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(chunk);
                framed.extend_from_slice(b"\r\n");
                if writer.write_all(&framed).await.is_err() {
                    break; // the server answered and closed: that is allowed
                }
            }
            let _ = writer.write_all(b"0\r\n\r\n").await;
        }
        Framing::Declared { sent } => {
            let _ = writer.write_all(&body[..sent.min(body.len())]).await;
        }
        Framing::Whole => {
            for (i, chunk) in body.chunks(64 * 1024).enumerate() {
                if let Err(e) = writer.write_all(chunk).await {
                    panic!("the server cut the body off after {} KiB: {e}", i * 64);
                }
            }
        }
    }
    let response = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the server answers the upload without waiting for the rest of the body")
        .expect("reader task");
    drop(writer);
    let text = String::from_utf8_lossy(&response).to_string();
    let status_line = text.lines().next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in the answer: {text:?}"));
    let head_end = text.find("\r\n\r\n").expect("end of the response head") + 4;
    let payload = &text[head_end..];
    let json = match (payload.find('{'), payload.rfind('}')) {
        (Some(a), Some(b)) if a < b => serde_json::from_str(&payload[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, json)
}

// ---------------------------------------------------------------------------------------------
// 200
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn detection_report_and_quota_headers() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;
    let jpeg = small_jpeg();
    away_from_minute_edge(8).await;

    let first = detect(&server, Some(&key), None, form(jpeg.clone(), "photo.jpg", None)).await;
    let body = first.ok();

    let score = body["score"].as_f64().expect("score is a number");
    assert!((0.0..=100.0).contains(&score), "score {score}");
    let verdict = body["verdict"].as_str().expect("verdict is a string");
    assert!(VERDICTS.contains(&verdict), "verdict {verdict:?}");
    let band = match score {
        s if s >= 85.0 => "AI generated",
        s if s >= 60.0 => "Likely AI generated",
        s if s >= 40.0 => "Uncertain",
        s if s >= 15.0 => "Likely authentic",
        _ => "Authentic",
    };
    assert_eq!(verdict, band, "verdict does not match the band of score {score}");
    assert!(!body["presentation"].as_str().expect("presentation is a string").is_empty());
    for field in ["confidence", "uncertainty"] {
        let v = body[field].as_f64().unwrap_or_else(|| panic!("{field} is not a number"));
        assert!((0.0..=1.0).contains(&v), "{field} {v}");
    }
    let explanations = body["explanations"].as_array().expect("explanations is an array");
    assert!(explanations.iter().all(Value::is_string));
    assert_eq!(body["hashes"]["sha256"], sha256_hex(&jpeg), "hashes.sha256 is not the digest of the upload");

    let modules = body["modules"].as_object().expect("modules is an object");
    for name in MODULES {
        let module = modules.get(name).unwrap_or_else(|| panic!("module {name} missing: {modules:?}"));
        let s = module["score"].as_f64().unwrap_or_else(|| panic!("modules.{name}.score is not a number"));
        assert!((0.0..=1.0).contains(&s), "modules.{name}.score {s}");
        assert!(
            module["flags"].as_array().is_some_and(|f| f.iter().all(Value::is_string)),
            "modules.{name}.flags"
        );
    }

    assert_eq!(body["image"]["format"], "jpeg");
    assert_eq!(body["image"]["width"], 320);
    assert_eq!(body["image"]["height"], 240);
    assert_eq!(body["image"]["bytes"], jpeg.len() as u64);
    assert_eq!(body["cached"], false);

    assert_eq!(first.must("x-ratelimit-limit"), "10");
    assert_eq!(first.must("x-ratelimit-remaining"), "9");
    let reset = first.num("x-ratelimit-reset");
    assert!((1..=60).contains(&reset), "X-RateLimit-Reset {reset}");
    assert!(close(reset, secs_left_in_minute(), 2), "X-RateLimit-Reset {reset} is not the end of the minute");
    assert_eq!(first.must("ratelimit-policy"), FREE_POLICY);
    assert_eq!(first.must("ratelimit"), format!("\"minute\";r=9;t={reset}"));

    // the same image again: answered from the cache, and still counted
    let second = detect(&server, Some(&key), None, form(jpeg.clone(), "again.jpg", None)).await;
    let again = second.ok();
    assert_eq!(again["cached"], true);
    assert_eq!(again["score"], body["score"]);
    assert_eq!(again["hashes"]["sha256"], body["hashes"]["sha256"]);
    assert_eq!(second.must("x-ratelimit-remaining"), "8");
    let reset = second.num("x-ratelimit-reset");
    assert_eq!(second.must("ratelimit"), format!("\"minute\";r=8;t={reset}"));
    assert_eq!(used_today(&server, &key).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_report_field_is_documented_in_the_spec() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;
    let documented = tellscan::http::report_schema::documented_properties();
    // with a model slug, so the optional `model` field is present too
    let body = detect(&server, Some(&key), None, form(small_jpeg(), "a.jpg", Some("sdxl"))).await.ok();
    let object = body.as_object().expect("report is an object");
    assert!(object.contains_key("model"));
    let undocumented: Vec<&String> = object.keys().filter(|k| !documented.contains(&k.as_str())).collect();
    assert!(undocumented.is_empty(), "report fields missing from report_schema.rs: {undocumented:?}");
    // and every field the design fixes is both sent and documented
    for field in
        ["score", "verdict", "presentation", "confidence", "uncertainty", "explanations", "hashes", "modules"]
    {
        assert!(object.contains_key(field), "{field} missing from the report");
        assert!(documented.contains(&field), "{field} missing from the schema");
    }
}

// ---------------------------------------------------------------------------------------------
// 400
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_detection_source_is_400_with_quota_headers_and_not_counted() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;
    let reply = detect(&server, Some(&key), Some("bogus"), form(small_jpeg(), "a.jpg", None)).await;
    let detail = reply.error(400, "invalid_detection_source");
    for accepted in ["extension", "extension-local", "website"] {
        assert!(detail.contains(accepted), "detail does not name {accepted}: {detail}");
    }
    reply.assert_quota_headers();
    assert_eq!(reply.must("x-ratelimit-limit"), "10");
    assert_eq!(reply.must("x-ratelimit-remaining"), "10");
    assert_eq!(used_today(&server, &key).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn model_slugs_are_validated() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;

    let malformed = detect(&server, Some(&key), None, form(small_jpeg(), "a.jpg", Some("SDXL"))).await;
    malformed.error(400, "invalid_model");
    malformed.assert_quota_headers();

    let unknown = detect(&server, Some(&key), None, form(small_jpeg(), "a.jpg", Some("not-a-model"))).await;
    let detail = unknown.error(400, "invalid_model");
    assert!(
        detail.contains("/api/models"),
        "the unknown-model detail does not point to /api/models: {detail}"
    );
    assert_eq!(used_today(&server, &key).await, 0, "an invalid model was counted");

    let body = detect(&server, Some(&key), None, form(small_jpeg(), "a.jpg", Some("sdxl"))).await.ok();
    assert_eq!(body["model"]["slug"], "sdxl");
    let score = body["model"]["score"].as_f64().expect("model.score is a number");
    assert!((0.0..=100.0).contains(&score), "model.score {score}");
    assert_eq!(used_today(&server, &key).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_file_is_400_and_an_empty_one_415() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;

    let no_file = reqwest::multipart::Form::new().text("model", "sdxl");
    let reply = detect(&server, Some(&key), None, no_file).await;
    reply.error(400, "bad_request");

    let reply = detect(&server, Some(&key), None, form(Vec::new(), "empty.jpg", None)).await;
    reply.error(415, "empty_file");
    reply.assert_quota_headers();
    assert_eq!(used_today(&server, &key).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn detection_sources_are_counted_per_source() {
    let server = TestServer::embedded().await;
    let key = server.key("enterprise").await;
    let jpeg = small_jpeg();
    away_from_minute_edge(5).await;
    for source in [Some("extension"), Some("website"), Some("extension-local"), None, Some("website")] {
        let reply = detect(&server, Some(&key), source, form(jpeg.clone(), "a.jpg", None)).await;
        assert_eq!(reply.status, 200, "source {source:?}: {}", reply.text);
    }
    let status = usage(&server, &key).await;
    let expected = json!({"api": 1, "extension": 1, "extension-local": 1, "website": 2});
    assert_eq!(status["sources"]["day"], expected, "per-source day counts");
    assert_eq!(status["sources"]["month"], expected, "per-source month counts");
    assert_eq!(status["windows"]["day"]["used"], 5);
    assert_eq!(status["windows"]["month"]["used"], 5);
}

// ---------------------------------------------------------------------------------------------
// 401
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_keys_are_401_without_quota_headers() {
    let server = TestServer::embedded().await;
    let jpeg = small_jpeg();
    let good = server.key("free").await;

    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no key", None, "missing_api_key"),
        ("malformed", Some("not-a-key".to_string()), "invalid_api_key"),
        ("malformed secret", Some(format!("imag_{}_short", key_id(&good))), "invalid_api_key"),
        ("unknown id", Some(format!("imag_0123456789abcdef_{}", "ab".repeat(32))), "invalid_api_key"),
        ("wrong secret", Some(format!("imag_{}_{}", key_id(&good), "0".repeat(64))), "invalid_api_key"),
    ];
    for (case, key, code) in cases {
        let argon2_before = server.state.keys.argon2_runs();
        let reply = detect(&server, key.as_deref(), None, form(jpeg.clone(), "a.jpg", None)).await;
        if case != "wrong secret" {
            assert_eq!(
                server.state.keys.argon2_runs(),
                argon2_before,
                "{case}: argon2 ran for a key it cannot match"
            );
        }
        assert_eq!(reply.status, 401, "{case}: {}", reply.text);
        reply.error(401, code);
        reply.assert_no_quota_headers();
    }
    // the good key is untouched by all that
    assert_eq!(detect(&server, Some(&good), None, form(jpeg.clone(), "a.jpg", None)).await.status, 200);

    let disabled = server.key("free").await;
    assert_eq!(detect(&server, Some(&disabled), None, form(jpeg.clone(), "a.jpg", None)).await.status, 200);
    let path = format!("/admin/keys/{}/disable", key_id(&disabled));
    assert_eq!(admin(&server, "POST", &path, None, Some(ADMIN_TOKEN)).await.status, 200);
    let reply = detect(&server, Some(&disabled), None, form(jpeg.clone(), "a.jpg", None)).await;
    reply.error(401, "disabled_api_key");
    reply.assert_no_quota_headers();

    let revoked = server.key("free").await;
    assert_eq!(detect(&server, Some(&revoked), None, form(jpeg.clone(), "a.jpg", None)).await.status, 200);
    let path = format!("/admin/keys/{}/revoke", key_id(&revoked));
    assert_eq!(admin(&server, "POST", &path, None, Some(ADMIN_TOKEN)).await.status, 200);
    let reply = detect(&server, Some(&revoked), None, form(jpeg.clone(), "a.jpg", None)).await;
    reply.error(401, "revoked_api_key");
    reply.assert_no_quota_headers();

    // usage needs a key too, with the same answers
    let reply = send(usage_request(&server, Some(&revoked))).await;
    reply.error(401, "revoked_api_key");
    reply.assert_no_quota_headers();
}

// ---------------------------------------------------------------------------------------------
// 413
// ---------------------------------------------------------------------------------------------

const SMALL_LIMIT: u64 = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declared_body_over_the_limit_is_413() {
    let server = TestServer::embedded_with(|s| s.server.max_upload_bytes = SMALL_LIMIT).await;
    let key = server.key("free").await;
    let big = jpeg_of_size(300_000);
    let reply = detect(&server, Some(&key), None, form(big, "big.jpg", None)).await;
    reply.error(413, "payload_too_large");
    reply.assert_quota_headers();
    assert_eq!(reply.must("x-ratelimit-remaining"), "10");

    // a file over the limit whose body is still within the multipart slack is refused too
    let over = jpeg_of_size(SMALL_LIMIT as usize + 1);
    let reply = detect(&server, Some(&key), None, form(over, "over.jpg", None)).await;
    reply.error(413, "payload_too_large");
    assert_eq!(used_today(&server, &key).await, 0, "a 413 was counted");

    // a declared length over the limit is refused before the body is read: only 1 KiB of it
    // is ever sent, and the connection stays open
    let (status, body) =
        raw_upload(server.addr, &key, &jpeg_of_size(300_000), Framing::Declared { sent: 1024 }).await;
    assert_eq!(status, 413, "declared length over the limit: {body}");
    assert_eq!(body["error"], "payload_too_large", "{body}");
    assert_eq!(used_today(&server, &key).await, 0, "a 413 was counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunked_body_over_the_limit_is_413_and_not_counted() {
    let server = TestServer::embedded_with(|s| s.server.max_upload_bytes = SMALL_LIMIT).await;
    let key = server.key("free").await;
    assert_eq!(detect(&server, Some(&key), None, form(small_jpeg(), "a.jpg", None)).await.status, 200);
    assert_eq!(used_today(&server, &key).await, 1);

    let (status, body) = raw_upload(server.addr, &key, &jpeg_of_size(300_000), Framing::Chunked).await;
    assert_eq!(status, 413, "a chunked upload over the limit: {body}");
    assert_eq!(body["error"], "payload_too_large", "{body}");
    assert_eq!(used_today(&server, &key).await, 1, "the refused chunked upload was counted");

    // the same framing with a small file works, so the 413 above is about the size
    let (status, body) = raw_upload(server.addr, &key, &small_jpeg(), Framing::Chunked).await;
    assert_eq!(status, 200, "a small chunked upload: {body}");
    assert_eq!(used_today(&server, &key).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_just_under_the_limit_is_accepted() {
    let server = TestServer::embedded_with(|s| s.server.max_upload_bytes = SMALL_LIMIT).await;
    let key = server.key("free").await;
    let file = jpeg_of_size(SMALL_LIMIT as usize - 100);
    let reply = detect(&server, Some(&key), None, form(file.clone(), "near.jpg", None)).await;
    assert!(
        reply.status == 200 || reply.status == 422,
        "a file under the limit got {}: {}",
        reply.status,
        reply.text
    );
    if reply.status == 200 {
        assert_eq!(reply.json()["image"]["bytes"], file.len() as u64);
    }
    assert_eq!(used_today(&server, &key).await, 1);
}

// ---------------------------------------------------------------------------------------------
// 415
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn format_is_decided_by_magic_bytes() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;

    let text = b"this is a text file, not a photo\n".repeat(20);
    let reply = detect(&server, Some(&key), None, form(text, "photo.jpg", None)).await;
    let detail = reply.error(415, "unsupported_media");
    assert!(detail.contains("JPEG, PNG, WebP, HEIC/HEIF or AVIF"), "{detail}");
    reply.assert_quota_headers();

    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[
        1, 0, 1, 0, 0x80, 0, 0, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2,
    ]);
    gif.extend_from_slice(&[0x44, 0x01, 0x00, 0x3B]);
    let reply = detect(&server, Some(&key), None, form(gif, "anim.gif", None)).await;
    reply.error(415, "unsupported_media");
    assert_eq!(used_today(&server, &key).await, 0, "a 415 was counted");

    let png = encode(&picture(320, 240), image::ImageFormat::Png);
    let body = detect(&server, Some(&key), None, form(png.clone(), "renamed.jpg", None)).await.ok();
    assert_eq!(body["image"]["format"], "png");
    assert_eq!(body["image"]["width"], 320);
    assert_eq!(body["image"]["height"], 240);
    assert_eq!(body["image"]["bytes"], png.len() as u64);
    assert_eq!(body["hashes"]["sha256"], sha256_hex(&png));

    // AVIF (AV1 in HEIF, decoded by the system libheif), whatever the name says
    let avif = read_fixture("libheif-example.avif");
    let body = detect(&server, Some(&key), None, form(avif.clone(), "photo.heic", None)).await.ok();
    assert_eq!(body["image"]["format"], "avif");
    assert_eq!(body["image"]["width"], 800);
    assert_eq!(body["image"]["height"], 533);
    assert_eq!(body["image"]["bytes"], avif.len() as u64);
    assert_eq!(body["hashes"]["sha256"], sha256_hex(&avif));
    for module in MODULES {
        assert!(body["modules"][module]["score"].is_number(), "{module}: {}", body["modules"]);
    }
    assert_eq!(used_today(&server, &key).await, 2, "the PNG and the AVIF were counted");
}

// ---------------------------------------------------------------------------------------------
// 422
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn truncated_image_is_422_and_counted() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;
    away_from_minute_edge(5).await;
    let truncated = small_jpeg()[..600].to_vec();
    let reply = detect(&server, Some(&key), None, form(truncated, "cut.jpg", None)).await;
    reply.error(422, "undecodable_image");
    assert_eq!(reply.must("x-ratelimit-remaining"), "9", "a 422 must count against the quota");
    assert_eq!(used_today(&server, &key).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image_over_max_side_is_422_and_counted() {
    let server = TestServer::embedded_with(|s| s.detector.max_side = 100).await;
    let key = server.key("free").await;
    away_from_minute_edge(5).await;
    let reply = detect(&server, Some(&key), None, form(small_jpeg(), "wide.jpg", None)).await;
    reply.error(422, "image_too_large");
    assert_eq!(reply.must("x-ratelimit-remaining"), "9", "a 422 must count against the quota");
    assert_eq!(used_today(&server, &key).await, 1);
}

// ---------------------------------------------------------------------------------------------
// 429
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minute_quota_is_429_with_retry_after() {
    let server = TestServer::embedded_with(|s| {
        free_tier(s, TierLimits { per_minute: 2, daily: 50, monthly: 1000 });
    })
    .await;
    let key = server.key("free").await;
    let jpeg = small_jpeg();
    away_from_minute_edge(10).await;
    for expected_remaining in ["1", "0"] {
        let reply = detect(&server, Some(&key), None, form(jpeg.clone(), "a.jpg", None)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.must("x-ratelimit-remaining"), expected_remaining);
    }
    let reply = detect(&server, Some(&key), None, form(jpeg.clone(), "a.jpg", None)).await;
    reply.error(429, "quota_exceeded");
    let retry = reply.num("retry-after");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(close(retry, secs_left_in_minute(), 2), "Retry-After {retry} is not the end of the minute");
    assert_eq!(reply.must("x-ratelimit-limit"), "2");
    assert_eq!(reply.must("x-ratelimit-remaining"), "0");
    assert_eq!(reply.num("x-ratelimit-reset"), retry);
    assert_eq!(reply.must("ratelimit"), format!("\"minute\";r=0;t={retry}"));
    assert_eq!(
        reply.must("ratelimit-policy"),
        "\"minute\";q=2;w=60, \"day\";q=50;w=86400, \"month\";q=1000;w=2592000"
    );
    // the denied request counted nothing
    let status = usage(&server, &key).await;
    assert_eq!(status["windows"]["minute"]["used"], 2);
    assert_eq!(status["windows"]["day"]["used"], 2);
    assert_eq!(status["windows"]["month"]["used"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daily_quota_is_429_until_midnight() {
    let server = TestServer::embedded_with(|s| {
        free_tier(s, TierLimits { per_minute: 10, daily: 2, monthly: 1000 });
    })
    .await;
    let key = server.key("free").await;
    let jpeg = small_jpeg();
    away_from_minute_edge(5).await;
    for _ in 0..2 {
        assert_eq!(detect(&server, Some(&key), None, form(jpeg.clone(), "a.jpg", None)).await.status, 200);
    }
    let reply = detect(&server, Some(&key), None, form(jpeg.clone(), "a.jpg", None)).await;
    reply.error(429, "quota_exceeded");
    let midnight = secs_to_midnight();
    assert_eq!(reply.must("x-ratelimit-limit"), "2");
    assert_eq!(reply.must("x-ratelimit-remaining"), "0");
    let reset = reply.num("x-ratelimit-reset");
    assert!(
        close(reset, midnight, 2),
        "X-RateLimit-Reset {reset}, expected about {midnight} (next UTC midnight)"
    );
    let retry = reply.num("retry-after");
    assert!(close(retry, midnight, 2), "Retry-After {retry}, expected about {midnight}");
    let ratelimit = reply.must("ratelimit");
    assert!(ratelimit.starts_with("\"day\""), "RateLimit {ratelimit}");
    assert_eq!(ratelimit, format!("\"day\";r=0;t={reset}"));
    assert_eq!(used_today(&server, &key).await, 2);
}

// ---------------------------------------------------------------------------------------------
// 503
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_503_and_not_counted() {
    let server = TestServer::embedded_with(|s| {
        s.server.workers = 1;
        s.server.queue = 0;
        s.server.result_cache_entries = 0;
    })
    .await;
    let key = server.key("enterprise").await;
    let big = encode(&picture(3000, 2250), image::ImageFormat::Jpeg);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(12));
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let request = detect_request(&server, Some(&key), None, form(big.clone(), "big.jpg", None));
        let start = std::sync::Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            send(request).await
        }));
    }
    let (mut ok, mut overloaded) = (0u64, 0u64);
    for task in tasks {
        let reply = task.await.expect("request task");
        match reply.status {
            200 => ok += 1,
            503 => {
                reply.error(503, "overloaded");
                let retry = reply.num("retry-after");
                assert!(retry >= 1, "Retry-After {retry}");
                overloaded += 1;
            }
            other => panic!("an overloaded server answered {other}: {}", reply.text),
        }
    }
    eprintln!("overload: {ok} served, {overloaded} shed");
    assert!(overloaded >= 1, "12 concurrent detections on 1 worker with no queue were all served");
    assert!(ok >= 1, "no detection was served at all");
    assert_eq!(used_today(&server, &key).await, ok, "503s were counted (200s: {ok}, 503s: {overloaded})");
}

/// A client that writes its whole body before reading (reqwest, most SDKs) reads the early
/// answer to a 10 MB upload (a full upload budget, a wrong key, a bad source header) instead
/// of a connection reset halfway through its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_answers_to_large_uploads_are_read_not_reset() {
    let server = TestServer::embedded_with(|s| s.server.upload_buffer_bytes = 1 << 20).await;
    let key = server.key("enterprise").await;
    let big = jpeg_of_size(10_000_000);

    let reply = detect(&server, Some(&key), None, form(big.clone(), "big.jpg", None)).await;
    reply.error(503, "overloaded");
    reply.assert_quota_headers();

    let wrong = format!("imag_{}_{}", key_id(&key), "0".repeat(64));
    let reply = detect(&server, Some(&wrong), None, form(big.clone(), "big.jpg", None)).await;
    reply.error(401, "invalid_api_key");

    let reply = detect(&server, None, None, form(big.clone(), "big.jpg", None)).await;
    reply.error(401, "missing_api_key");

    let reply = detect(&server, Some(&key), Some("fax"), form(big.clone(), "big.jpg", None)).await;
    reply.error(400, "invalid_detection_source");

    // what makes those answers reliable: the body is read to its end, not cut off (a client
    // whose connection is reset may lose the answer that was already on its way)
    let (status, body) = raw_upload(server.addr, &key, &big, Framing::Whole).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "overloaded", "{body}");
    let (status, body) = raw_upload(server.addr, &wrong, &big, Framing::Whole).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_api_key", "{body}");
    assert_eq!(used_today(&server, &key).await, 0, "an early answer was counted");
}

// ---------------------------------------------------------------------------------------------
// usage, models, health, metrics, docs, routing
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_status_needs_a_key_and_consumes_nothing() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;

    let reply = send(usage_request(&server, None)).await;
    reply.error(401, "missing_api_key");
    reply.assert_no_quota_headers();

    away_from_minute_edge(8).await;
    assert_eq!(detect(&server, Some(&key), None, form(small_jpeg(), "a.jpg", None)).await.status, 200);
    for _ in 0..3 {
        let reply = send(usage_request(&server, Some(&key))).await;
        let status = reply.ok();
        assert_eq!(status["tier"], "free");
        assert_eq!(status["key_id"], key_id(&key));
        let w = &status["windows"];
        for (name, limit) in [("minute", 10), ("day", 50), ("month", 1000)] {
            assert_eq!(w[name]["limit"], limit, "windows.{name}.limit");
            assert_eq!(w[name]["used"], 1, "windows.{name}.used: usage/status consumed quota");
            assert_eq!(w[name]["remaining"], limit - 1, "windows.{name}.remaining");
            assert!(w[name]["reset"].as_u64().is_some_and(|r| r >= 1), "windows.{name}.reset");
        }
        let minute_reset = w["minute"]["reset"].as_u64().unwrap();
        assert!((1..=60).contains(&minute_reset));
        assert!(close(minute_reset, secs_left_in_minute(), 2));
        assert!(close(w["day"]["reset"].as_u64().unwrap(), secs_to_midnight(), 2));
        assert_eq!(reply.must("x-ratelimit-remaining"), "9");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn models_and_health() {
    let server = TestServer::embedded().await;
    let models = send(client().get(server.url("/api/models"))).await.ok();
    let list = models["models"].as_array().expect("models is an array");
    let sdxl = list.iter().find(|m| m["slug"] == "sdxl").expect("sdxl is listed");
    assert!(sdxl["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(list.iter().any(|m| m["slug"] == "midjourney"), "midjourney is listed");

    let health = send(client().get(server.url("/health"))).await.ok();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"]["kind"], "embedded");
    assert_eq!(health["store"]["connected"], true);
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_requests_detections_and_quota_decisions() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;
    assert_eq!(detect(&server, Some(&key), None, form(small_jpeg(), "a.jpg", None)).await.status, 200);
    let reply = send(client().get(server.url("/metrics"))).await;
    assert_eq!(reply.status, 200);
    let text = &reply.text;
    assert!(text.contains("tellscan_http_requests_total"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("tellscan_http_requests_total{")
            && l.contains("route=\"/api/detect\"")
            && l.contains("status=\"200\"")),
        "no request counter for a 200 on /api/detect:\n{text}"
    );
    for name in ["tellscan_detection_seconds", "tellscan_quota_decisions_total", "tellscan_queue_depth"] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_and_docs_are_served() {
    let server = TestServer::embedded().await;
    let reply = send(client().get(server.url("/api/openapi.json"))).await;
    let spec = reply.ok();
    assert!(spec["paths"]["/api/detect"].is_object(), "the served spec lacks /api/detect");
    assert!(spec["paths"]["/api/detect"]["post"].is_object());
    let generated: Value = serde_json::from_str(&tellscan::http::openapi_json()).unwrap();
    assert_eq!(spec, generated, "the served spec differs from openapi_json()");

    let docs = send(client().get(server.url("/docs"))).await;
    assert_eq!(docs.status, 200, "{}", docs.text);
    assert!(docs.must("content-type").starts_with("text/html"), "{:?}", docs.header("content-type"));
    assert!(docs.text.to_lowercase().contains("<html"), "/docs is not an HTML page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_routes_and_methods_answer_json() {
    let server = TestServer::embedded().await;
    let reply = send(client().get(server.url("/no/such/route"))).await;
    reply.error(404, "not_found");
    let reply = send(client().get(server.url("/api/detect"))).await;
    reply.error(405, "method_not_allowed");
    assert_eq!(reply.must("allow"), "POST", "RFC 9110: a 405 names the allowed methods");
    for (method, path, allow) in [
        ("TRACE", "/health".to_string(), "GET, HEAD"),
        ("PUT", "/api/v1/analyses/0123".to_string(), "GET, HEAD, DELETE"),
        ("GET", "/api/v1/analyses/url".to_string(), "POST"),
        ("DELETE", "/admin/keys/0123456789abcdef/tier".to_string(), "PUT"),
    ] {
        let reply =
            send(client().request(method.parse().unwrap(), server.url(&path)).header("x-api-key", "x")).await;
        reply.error(405, "method_not_allowed");
        assert_eq!(reply.must("allow"), allow, "{method} {path}");
    }
}

#[test]
fn committed_openapi_spec_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("cannot read {path} ({e}); run `cargo run -- openapi --out openapi/openapi.json`")
    });
    let committed: Value = serde_json::from_str(&committed).expect("openapi/openapi.json is JSON");
    let generated: Value =
        serde_json::from_str(&tellscan::http::openapi_json()).expect("generated spec is JSON");
    assert!(
        committed == generated,
        "openapi/openapi.json has drifted from the code; run `cargo run -- openapi --out openapi/openapi.json` \
         and commit the result"
    );
}

// ---------------------------------------------------------------------------------------------
// admin API
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_key_lifecycle() {
    let server = TestServer::embedded().await;
    let jpeg = small_jpeg();
    let tok = Some(ADMIN_TOKEN);

    let created =
        admin(&server, "POST", "/admin/keys", Some(json!({"name": "partner", "tier": "free"})), tok).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    let key = created["key"].as_str().expect("key is a string").to_string();
    assert!(key.starts_with("imag_"), "{key}");
    let id = key_id(&key).to_string();
    assert_eq!(created["record"]["id"], id);
    assert_eq!(created["record"]["name"], "partner");
    assert_eq!(created["record"]["tier"], "free");
    assert_eq!(created["record"]["state"], "active");
    let reply = detect(&server, Some(&key), None, form(jpeg.clone(), "a.jpg", None)).await;
    assert_eq!(reply.status, 200, "a created key does not work: {}", reply.text);
    assert_eq!(reply.must("x-ratelimit-limit"), "10");

    let list = admin(&server, "GET", "/admin/keys", None, tok).await;
    let keys = list.ok();
    assert!(
        keys.as_array().expect("list is an array").iter().any(|k| k["id"] == id),
        "the key is not listed"
    );
    assert!(!list.text.contains(key_secret(&key)), "the list shows the secret");
    assert!(!list.text.to_lowercase().contains("argon2"), "the list shows a hash: {}", list.text);
    let one = admin(&server, "GET", &format!("/admin/keys/{id}"), None, tok).await;
    assert_eq!(one.ok()["id"], id);
    assert!(!one.text.contains(key_secret(&key)) && !one.text.to_lowercase().contains("argon2"));

    // rotate: the new key works, the old one is refused at once
    let rotated = admin(&server, "POST", &format!("/admin/keys/{id}/rotate"), None, tok).await.ok();
    let new_key = rotated["key"].as_str().expect("rotated key").to_string();
    assert_ne!(new_key, key);
    assert_eq!(key_id(&new_key), id, "rotation keeps the id");
    assert!(rotated["record"]["rotated_at"].is_string());
    assert_eq!(detect(&server, Some(&new_key), None, form(jpeg.clone(), "a.jpg", None)).await.status, 200);
    let old = detect(&server, Some(&key), None, form(jpeg.clone(), "a.jpg", None)).await;
    old.error(401, "invalid_api_key");
    old.assert_no_quota_headers();
    let key = new_key;

    // disable / enable
    let disabled = admin(&server, "POST", &format!("/admin/keys/{id}/disable"), None, tok).await.ok();
    assert_eq!(disabled["state"], "disabled");
    detect(&server, Some(&key), None, form(jpeg.clone(), "a.jpg", None)).await.error(401, "disabled_api_key");
    let enabled = admin(&server, "POST", &format!("/admin/keys/{id}/enable"), None, tok).await.ok();
    assert_eq!(enabled["state"], "active");
    assert_eq!(detect(&server, Some(&key), None, form(jpeg.clone(), "a.jpg", None)).await.status, 200);

    // tier: the next detection carries the new limits
    let bad =
        admin(&server, "PUT", &format!("/admin/keys/{id}/tier"), Some(json!({"tier": "gold"})), tok).await;
    // well-formed but not configured: 422 (a malformed name is 400)
    bad.error(422, "unknown_tier");
    let tiered =
        admin(&server, "PUT", &format!("/admin/keys/{id}/tier"), Some(json!({"tier": "premium"})), tok).await;
    assert_eq!(tiered.ok()["tier"], "premium");
    let reply = detect(&server, Some(&key), None, form(jpeg.clone(), "a.jpg", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.must("x-ratelimit-limit"), "30", "the tier change did not apply at once");
    assert_eq!(
        reply.must("ratelimit-policy"),
        "\"minute\";q=30;w=60, \"day\";q=1000;w=86400, \"month\";q=2500;w=2592000"
    );
    assert_eq!(usage(&server, &key).await["tier"], "premium");

    // revoke is final
    let revoked = admin(&server, "POST", &format!("/admin/keys/{id}/revoke"), None, tok).await.ok();
    assert_eq!(revoked["state"], "revoked");
    detect(&server, Some(&key), None, form(jpeg.clone(), "a.jpg", None)).await.error(401, "revoked_api_key");
    // a state conflict, in HTTP terms 409
    let again = admin(&server, "POST", &format!("/admin/keys/{id}/enable"), None, tok).await;
    again.error(409, "key_revoked");
    detect(&server, Some(&key), None, form(jpeg.clone(), "a.jpg", None)).await.error(401, "revoked_api_key");
    let rotate = admin(&server, "POST", &format!("/admin/keys/{id}/rotate"), None, tok).await;
    rotate.error(409, "key_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_api_refuses_bad_tokens_and_bad_ids() {
    let server = TestServer::embedded().await;
    let body = Some(json!({"name": "x", "tier": "free"}));

    let reply = admin(&server, "POST", "/admin/keys", body.clone(), Some("wrong-token")).await;
    reply.error(401, "invalid_admin_token");
    let reply = admin(&server, "GET", "/admin/keys", None, Some("wrong-token")).await;
    reply.error(401, "invalid_admin_token");

    let reply = admin(&server, "GET", "/admin/keys", None, None).await;
    reply.error(401, "unauthorized");
    let reply = admin(&server, "POST", "/admin/keys", body.clone(), None).await;
    reply.error(401, "unauthorized");

    let reply =
        admin(&server, "POST", "/admin/keys", Some(json!({"name": "x", "tier": "gold"})), Some(ADMIN_TOKEN))
            .await;
    reply.error(422, "unknown_tier");
    let reply =
        admin(&server, "POST", "/admin/keys", Some(json!({"name": "x", "tier": "Gold!"})), Some(ADMIN_TOKEN))
            .await;
    reply.error(400, "invalid_tier");

    admin(&server, "GET", "/admin/keys/NOT-AN-ID", None, Some(ADMIN_TOKEN))
        .await
        .error(400, "invalid_key_id");
    admin(&server, "POST", "/admin/keys/xyz/disable", None, Some(ADMIN_TOKEN))
        .await
        .error(400, "invalid_key_id");
    admin(&server, "GET", "/admin/keys/0123456789abcdef", None, Some(ADMIN_TOKEN))
        .await
        .error(404, "unknown_key");
    admin(&server, "POST", "/admin/keys/0123456789abcdef/revoke", None, Some(ADMIN_TOKEN))
        .await
        .error(404, "unknown_key");
    admin(
        &server,
        "PUT",
        "/admin/keys/0123456789abcdef/tier",
        Some(json!({"tier": "premium"})),
        Some(ADMIN_TOKEN),
    )
    .await
    .error(404, "unknown_key");
    // nothing was created by the refused calls
    let keys = admin(&server, "GET", "/admin/keys", None, Some(ADMIN_TOKEN)).await.ok();
    assert_eq!(keys, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_api_is_disabled_without_a_token() {
    let server = TestServer::embedded_with(|s| s.admin.token = String::new()).await;
    admin(&server, "GET", "/admin/keys", None, Some(ADMIN_TOKEN)).await.error(403, "admin_disabled");
    admin(&server, "POST", "/admin/keys", Some(json!({"name": "x", "tier": "free"})), Some("anything"))
        .await
        .error(403, "admin_disabled");
}
