//! Asynchronous analyses over real HTTP on both stores: submit, poll until completed, batch,
//! external_id, accounts, malformed and unknown ids, delete.
mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::server::{
    client, detect_request, form, poll_analysis, small_jpeg, status_json, submit_analyses, usage_request,
    used, TestServer,
};
use serde_json::Value;

fn submit_form(files: Vec<(Vec<u8>, &str)>, external_id: Option<&str>) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (bytes, name) in files {
        form = form.part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
    }
    match external_id {
        Some(e) => form.text("external_id", e.to_string()),
        None => form,
    }
}

async fn poll_until_finished(server: &TestServer, key: &str, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = poll_analysis(server, key, id).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] != "processing" {
            return body;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "analysis {id} did not finish: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn flow(server: TestServer) {
    let key = server.key("enterprise").await;
    let jpeg = small_jpeg();

    // one file
    let (status, body) =
        submit_analyses(&server, &key, submit_form(vec![(jpeg.clone(), "one.jpg")], Some("ref-42"))).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "processing");
    assert_eq!(body["file_name"], "one.jpg");
    assert_eq!(body["file_type"], "image/jpeg");
    assert_eq!(body["external_id"], "ref-42");
    assert!(body["estimated_completion_seconds"].as_u64().is_some());
    let id = body["id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 32);

    let done = poll_until_finished(&server, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["external_id"], "ref-42");
    assert!(done["completed_at"].as_str().is_some());
    let result = &done["result"];
    let score = result["confidence_score"].as_f64().expect("confidence_score");
    assert!((0.0..=100.0).contains(&score));
    assert_eq!(result["is_ai_generated"], score >= 60.0);
    let expected_risk = match score {
        s if s < 40.0 => "low",
        s if s < 60.0 => "medium",
        s if s < 85.0 => "high",
        _ => "critical",
    };
    assert_eq!(result["risk_level"], expected_risk);
    assert!(result["detection_details"].is_array());
    assert_eq!(result["file_metadata"]["width"], 320);
    assert_eq!(result["report"]["score"].as_f64(), Some(score));
    assert_eq!(result["report"]["image"]["format"], "jpeg");

    // batch: one analysis per file, in order
    let png = common::encode(&common::picture(200, 150), image::ImageFormat::Png);
    let (status, body) =
        submit_analyses(&server, &key, submit_form(vec![(jpeg.clone(), "a.jpg"), (png, "b.png")], None))
            .await;
    assert_eq!(status, 202, "{body}");
    let batch = body["analyses"].as_array().expect("analyses");
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[0]["file_name"], "a.jpg");
    assert_eq!(batch[1]["file_type"], "image/png");
    for entry in batch {
        let done = poll_until_finished(&server, &key, entry["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "completed");
    }
    // usage counted one per file: 1 + 2
    let usage: Value = usage_request(&server, Some(&key)).send().await.unwrap().json().await.unwrap();
    assert_eq!(used(&usage)[1], 3);

    // undecodable file: the analysis fails with the detector's code
    let truncated = jpeg[..600].to_vec();
    let (_, body) = submit_analyses(&server, &key, submit_form(vec![(truncated, "bad.jpg")], None)).await;
    let failed = poll_until_finished(&server, &key, body["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["error"], "undecodable_image");

    // another account sees 403; malformed 400; unknown 404
    let stranger = server.key("free").await;
    let (status, body) = poll_analysis(&server, &stranger, &id).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let (status, body) = poll_analysis(&server, &key, "not-an-id").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_analysis_id")));
    let (status, body) = poll_analysis(&server, &key, &"0".repeat(32)).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("unknown_analysis")));

    // a text file is refused like on /api/detect, and not counted
    let (status, body) =
        submit_analyses(&server, &key, submit_form(vec![(b"hello".to_vec(), "x.jpg")], None)).await;
    assert_eq!((status, body["error"].as_str()), (415, Some("unsupported_media")));
    let (status, body) =
        submit_analyses(&server, &key, submit_form(vec![(jpeg.clone(), "x.jpg")], Some(&"x".repeat(129))))
            .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_external_id")));

    // delete: the stranger cannot, the owner can, then it is gone
    let url = server.url(&format!("/api/v1/analyses/{id}"));
    let resp = client().delete(&url).header("x-api-key", &stranger).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let resp = client().delete(&url).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"id": id, "deleted": true}));
    let (status, _) = poll_analysis(&server, &key, &id).await;
    assert_eq!(status, 404);
    // the cached report of that image went with it: the next detection is not served from cache
    let resp = detect_request(&server, Some(&key), None, form(jpeg, "again.jpg", None)).send().await.unwrap();
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["cached"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn analyses_flow_on_the_embedded_store() {
    flow(TestServer::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn analyses_flow_on_redis() {
    let redis = RedisServer::start();
    flow(TestServer::redis_with(&redis.url(), |_| {}).await).await;
}

async fn submit_url(server: &TestServer, key: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(server.url("/api/v1/analyses/url"))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .expect("submit answered");
    status_json(resp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loopback_url_is_refused_by_default_and_never_contacted() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;
    let (port, hits) = common::origin::server(common::origin::image_response(&small_jpeg())).await;
    for url in [format!("http://127.0.0.1:{port}/a.jpg"), format!("http://localhost:{port}/a.jpg")] {
        let (status, body) = submit_url(&server, &key, serde_json::json!({ "url": url })).await;
        assert_eq!((status, body["error"].as_str()), (422, Some("url_refused")), "{url}: {body}");
    }
    let (status, body) = submit_url(&server, &key, serde_json::json!({ "url": "file:///etc/passwd" })).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("invalid_url")));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the refused origin saw no request");
    let usage: Value = usage_request(&server, Some(&key)).send().await.unwrap().json().await.unwrap();
    assert_eq!(used(&usage)[1], 0, "refused submissions are not counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_allowed_url_is_downloaded_sniffed_and_analysed() {
    let server =
        TestServer::embedded_with(|s| s.analyses.allowed_networks = vec!["127.0.0.0/8".into()]).await;
    let key = server.key("free").await;
    let (port, hits) = common::origin::server(common::origin::image_response(&small_jpeg())).await;
    let url = format!("http://127.0.0.1:{port}/photos/cat.jpg");
    let (status, body) =
        submit_url(&server, &key, serde_json::json!({ "url": url, "external_id": "u-1" })).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["file_name"], "cat.jpg");
    assert_eq!(body["file_type"], "image/jpeg");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let done = poll_until_finished(&server, &key, body["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["external_id"], "u-1");

    // an origin serving text is refused like an upload
    let (port, _) = common::origin::server(common::origin::ok_body(100)).await;
    let (status, body) =
        submit_url(&server, &key, serde_json::json!({ "url": format!("http://127.0.0.1:{port}/x") })).await;
    assert_eq!((status, body["error"].as_str()), (415, Some("unsupported_media")));
    // an origin serving more than the limit is 413
    let big = TestServer::embedded_with(|s| {
        s.analyses.allowed_networks = vec!["127.0.0.0/8".into()];
        s.server.max_upload_bytes = 1000;
    })
    .await;
    let big_key = big.key("free").await;
    let (port, _) = common::origin::server(common::origin::ok_body(5000)).await;
    let (status, body) =
        submit_url(&big, &big_key, serde_json::json!({ "url": format!("http://127.0.0.1:{port}/x") })).await;
    assert_eq!((status, body["error"].as_str()), (413, Some("payload_too_large")));
}
