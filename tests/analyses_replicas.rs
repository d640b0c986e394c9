//! Redis mode with two replicas (two real `tellscan serve` processes on one Redis): the
//! replica holding an analysis is killed with SIGKILL, and the other takes the job over after
//! the visibility timeout and completes it, once.
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::server::{client, status_json};
use serde_json::Value;
use tokio::process::{Child, Command};

/// Seconds a claim hides a job (short, so the takeover is quick).
const VISIBILITY_SECS: u64 = 3;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `tellscan` with no configuration from the environment but Redis at `redis_url`.
fn tellscan(redis_url: &str, data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tellscan"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TELLSCAN_") || name == "REDIS_URL" {
            cmd.env_remove(name);
        }
    }
    cmd.env("RUST_LOG", "error")
        .env("TELLSCAN_REDIS_URL", redis_url)
        .env("TELLSCAN_DATA_DIR", data_dir)
        .env("TELLSCAN_ANALYSES__WORKERS", "1")
        .env("TELLSCAN_ANALYSES__VISIBILITY_SECS", VISIBILITY_SECS.to_string())
        .env("TELLSCAN_SERVER__WORKERS", "1");
    cmd
}

/// A replica listening on a free loopback port, up and healthy.
struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    async fn start(redis_url: &str, data_dir: &std::path::Path) -> Replica {
        let port = free_port();
        let child = tellscan(redis_url, data_dir)
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tellscan serve starts");
        let replica = Replica { child, port };
        let started = Instant::now();
        while client().get(replica.url("/health")).send().await.map(|r| r.status().as_u16()).ok() != Some(200)
        {
            assert!(started.elapsed() < Duration::from_secs(30), "replica on {port} did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        replica
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

async fn redis_get<T: redis::FromRedisValue>(url: &str, cmd: &mut redis::Cmd) -> T {
    let client = redis::Client::open(url).expect("redis client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis connection");
    cmd.query_async(&mut conn).await.expect("redis command")
}

/// A JPEG large enough that its analysis takes a noticeable time (12 MP).
fn large_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(4000, 3000, |x, y| {
        let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 7;
        image::Rgb([(v % 256) as u8, ((x + y) % 256) as u8, ((v >> 8) % 256) as u8])
    });
    common::encode(&img, image::ImageFormat::Jpeg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_held_by_a_killed_replica_completes_once_on_the_other() {
    let redis = RedisServer::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let created = tellscan(&url, dir.path())
        .args(["keys", "create", "--tier", "enterprise", "--name", "replicas"])
        .output()
        .await
        .expect("keys create runs");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let key = String::from_utf8_lossy(&created.stdout).lines().last().expect("a key").to_string();

    let mut first = Replica::start(&url, &dir.path().join("a")).await;
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(large_jpeg()).file_name("large.jpg"));
    let resp = client()
        .post(first.url("/api/v1/analyses"))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .expect("submitted");
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_string();

    // wait until the first replica holds the job, then kill it without warning
    let started = Instant::now();
    loop {
        let claimed: Option<f64> =
            redis_get(&url, redis::cmd("ZSCORE").arg("tellscan:an_claims").arg(&id)).await;
        if claimed.is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the first replica never claimed the job");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.child.start_kill().expect("SIGKILL sent");
    first.child.wait().await.expect("the first replica is gone");
    let json: String = redis_get(&url, redis::cmd("GET").arg(format!("tellscan:an:{id}"))).await;
    let record: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        record["status"], "processing",
        "killed while holding the job (a larger image is needed otherwise)"
    );

    let second = Replica::start(&url, &dir.path().join("b")).await;
    let started = Instant::now();
    let done = loop {
        let resp = client()
            .get(second.url(&format!("/api/v1/analyses/{id}")))
            .header("x-api-key", &key)
            .send()
            .await
            .expect("polled");
        let (status, body) = status_json(resp).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] != "processing" {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "the job was not taken over: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["result"]["confidence_score"].as_f64().is_some(), "{done}");
    let attempts: u32 = redis_get(&url, redis::cmd("HGET").arg("tellscan:an_attempts").arg(&id)).await;
    assert_eq!(attempts, 2, "claimed by the killed replica, then by the other");
    let metrics = client().get(second.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l == "tellscan_analyses_completed_total 1"),
        "completed once, by the second replica:\n{metrics}"
    );
    let (queued, claims): (u64, u64) = (
        redis_get(&url, redis::cmd("LLEN").arg("tellscan:an_queue")).await,
        redis_get(&url, redis::cmd("ZCARD").arg("tellscan:an_claims")).await,
    );
    assert_eq!((queued, claims), (0, 0), "nothing left in the queue");
    // the result stays as completed: polling again gives the same body
    let resp = client()
        .get(second.url(&format!("/api/v1/analyses/{id}")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(status_json(resp).await.1, done);
}
