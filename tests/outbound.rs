//! The outbound client against loopback test servers: refused addresses are never
//! connected to, allowed ones are fetched within limits, and redirects are checked hop by hop.
//! Nothing here connects outside 127.0.0.0/8 (refused addresses are refused before connecting).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::origin::{ok_body, server};

use tellscan::outbound::address::{AddressPolicy, Refusal};
use tellscan::outbound::client::{FetchError, OutboundClient};

fn redirect_to(location: &str) -> Vec<u8> {
    format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .into_bytes()
}

fn loopback_allowed() -> AddressPolicy {
    AddressPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()])
}

#[tokio::test]
async fn loopback_is_refused_by_default_and_never_contacted() {
    let (port, hits) = server(ok_body(10)).await;
    let client = OutboundClient::new(AddressPolicy::default(), Duration::from_secs(5)).unwrap();
    for url in [format!("http://127.0.0.1:{port}/a.jpg"), format!("http://localhost:{port}/a.jpg")] {
        match client.fetch(&url, 1000).await {
            Err(FetchError::Refused { reason: Refusal::Loopback, .. }) => {}
            other => panic!("{url}: expected a loopback refusal, got {other:?}"),
        }
    }
    match client.post_json(&format!("http://localhost:{port}/hook"), &[], b"{}".to_vec()).await {
        Err(FetchError::Refused { reason: Refusal::Loopback, .. }) => {}
        other => panic!("webhook to localhost: expected a refusal, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the refused server saw no connection");
}

#[tokio::test]
async fn allowed_networks_are_fetched_within_the_size_limit() {
    let (port, hits) = server(ok_body(2000)).await;
    let client = OutboundClient::new(loopback_allowed(), Duration::from_secs(5)).unwrap();
    let fetched = client.fetch(&format!("http://127.0.0.1:{port}/a.jpg"), 4000).await.unwrap();
    assert_eq!(fetched.bytes.len(), 2000);
    match client.fetch(&format!("http://127.0.0.1:{port}/a.jpg"), 1000).await {
        Err(FetchError::TooLarge(1000)) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_without_length_is_cut_off_while_streaming() {
    let mut response = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
    response.extend(std::iter::repeat_n(b'y', 50_000));
    let (port, _) = server(response).await;
    let client = OutboundClient::new(loopback_allowed(), Duration::from_secs(5)).unwrap();
    match client.fetch(&format!("http://127.0.0.1:{port}/"), 10_000).await {
        Err(FetchError::TooLarge(10_000)) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn every_redirect_is_checked() {
    let client = OutboundClient::new(loopback_allowed(), Duration::from_secs(5)).unwrap();
    // to a private literal: refused before any connection is attempted
    let (port, _) = server(redirect_to("http://10.0.0.1/a.jpg")).await;
    match client.fetch(&format!("http://127.0.0.1:{port}/"), 1000).await {
        Err(FetchError::Refused { reason: Refusal::Private, .. }) => {}
        other => panic!("expected a private-address refusal, got {other:?}"),
    }
    // to IPv6 loopback, which the allowed IPv4 network does not cover
    let (port, _) = server(redirect_to("http://[::1]:9/a.jpg")).await;
    match client.fetch(&format!("http://127.0.0.1:{port}/"), 1000).await {
        Err(FetchError::Refused { reason: Refusal::Loopback, .. }) => {}
        other => panic!("expected a loopback refusal, got {other:?}"),
    }
    // to a non-HTTP scheme
    let (port, _) = server(redirect_to("file:///etc/passwd")).await;
    assert!(client.fetch(&format!("http://127.0.0.1:{port}/"), 1000).await.is_err());
    // to an allowed place: followed
    let (target, target_hits) = server(ok_body(5)).await;
    let (port, _) = server(redirect_to(&format!("http://127.0.0.1:{target}/b.jpg"))).await;
    let fetched = client.fetch(&format!("http://127.0.0.1:{port}/"), 1000).await.unwrap();
    assert_eq!(fetched.bytes, b"xxxxx");
    assert_eq!(fetched.final_url.path(), "/b.jpg");
    assert_eq!(target_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn non_success_statuses_are_errors() {
    let (port, _) =
        server(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()).await;
    let client = OutboundClient::new(loopback_allowed(), Duration::from_secs(5)).unwrap();
    match client.fetch(&format!("http://127.0.0.1:{port}/"), 1000).await {
        Err(FetchError::Status(404)) => {}
        other => panic!("expected Status(404), got {other:?}"),
    }
}
