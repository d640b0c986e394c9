//! A loopback webhook receiver for tests: records every request (headers, body, arrival
//! time) and answers with scripted statuses.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{IntoResponse, Request};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    /// When it arrived.
    pub at: Instant,
    /// Its headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// Its body.
    pub body: Vec<u8>,
}

/// A running receiver.
pub struct Receiver {
    /// Its loopback port.
    pub port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    /// Start on a free loopback port. The n-th request gets `statuses[n]`, and every request
    /// after the list ends gets its last status.
    pub async fn start(statuses: Vec<u16>) -> Receiver {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("receiver binds");
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().expect("a socket address");
        assert!(addr.ip().is_loopback());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&hits);
        let app = poem::endpoint::make(move |mut req: Request| {
            let recorded = Arc::clone(&recorded);
            let statuses = statuses.clone();
            async move {
                let at = Instant::now();
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
                    .collect();
                let body = req.take_body().into_vec().await.unwrap_or_default();
                let n = {
                    let mut hits = recorded.lock().unwrap();
                    hits.push(Hit { at, headers, body });
                    hits.len() - 1
                };
                let status = statuses.get(n).or(statuses.last()).copied().unwrap_or(200);
                poem::http::StatusCode::from_u16(status).unwrap().into_response()
            }
        });
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        Receiver { port: addr.port(), hits }
    }

    /// The URL of `path` on the receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The requests so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}
