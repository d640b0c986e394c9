//! Smoke test of the harness: one detection over real HTTP.
mod common;

use common::server::{detect_request, form, small_jpeg, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_detection_over_http() {
    let server = TestServer::embedded().await;
    let key = server.key("free").await;
    let resp =
        detect_request(&server, Some(&key), None, form(small_jpeg(), "a.jpg", None)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "9");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["score"].as_f64().is_some());
}
