//! Memory under large uploads (DESIGN §6: load beyond capacity is shed, never paid for in
//! memory): 64 clients each upload a different 10 MB image at once to the real server binary,
//! and the server's peak resident set (`VmHWM`) stays under 1 GiB. Every request gets an
//! answer: a report, or a 503 for what was shed.
mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::server::client;

/// Concurrent uploads.
const CLIENTS: usize = 64;
/// The peak resident set the server may reach.
const LIMIT_BYTES: u64 = 1 << 30;

/// The server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A 10 MB PNG: 1,900 × 1,800 px of seeded noise (noise does not compress).
fn ten_megabyte_png() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let img = image::RgbImage::from_fn(1900, 1800, |_, _| {
        // xorshift: cheap, seeded, incompressible enough
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    common::png(&img)
}

/// `VmHWM` of a process: its peak resident set, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status is readable");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_ten_megabyte_uploads_stay_under_one_gibibyte() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_tellscan");
    let created = Command::new(bin)
        .args(["keys", "--data-dir"])
        .arg(&data)
        .args(["create", "--tier", "enterprise", "--name", "memory"])
        .output()
        .expect("tellscan keys runs");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let key = String::from_utf8_lossy(&created.stdout).lines().last().expect("the key").trim().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = Server(
        Command::new(bin)
            .args(["serve", "--data-dir"])
            .arg(&data)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .env("TELLSCAN_SERVER__WORKERS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tellscan serve starts"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = client();
    for _ in 0..100 {
        if client.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let image = ten_megabyte_png();
    assert!((9_500_000..=10_485_760).contains(&image.len()), "a 10 MB upload: {} bytes", image.len());
    let idle = peak_rss(server.0.id());

    let uploads = (0..CLIENTS).map(|i| {
        let client = client.clone();
        let (url, key) = (format!("{base}/api/detect"), key.clone());
        // a different file each (a text chunk after IHDR), so no answer comes from the cache
        let mut image = image.clone();
        image.splice(33..33, common::png_chunk(b"tEXt", format!("Comment\0client {i}").as_bytes()));
        tokio::spawn(async move {
            let part = reqwest::multipart::Part::bytes(image).file_name(format!("{i}.png"));
            let form = reqwest::multipart::Form::new().part("file", part);
            let reply = client
                .post(url)
                .header("x-api-key", key)
                .multipart(form)
                .timeout(Duration::from_secs(600))
                .send()
                .await
                .expect("the upload is answered");
            reply.status().as_u16()
        })
    });
    let mut statuses = Vec::new();
    for upload in uploads.collect::<Vec<_>>() {
        statuses.push(upload.await.unwrap());
    }
    let peak = peak_rss(server.0.id());
    let served = statuses.iter().filter(|s| **s == 200).count();
    let shed = statuses.iter().filter(|s| **s == 503).count();
    println!(
        "{CLIENTS} concurrent uploads of {} bytes: {served} × 200, {shed} × 503; server peak RSS {:.0} MiB (idle {:.0} MiB)",
        image.len(),
        peak as f64 / 1048576.0,
        idle as f64 / 1048576.0
    );
    assert_eq!(served + shed, CLIENTS, "every upload gets a report or a 503: {statuses:?}");
    assert!(served >= 1, "some uploads are served: {statuses:?}");
    assert!(peak < LIMIT_BYTES, "peak RSS {peak} bytes is over 1 GiB");
}
