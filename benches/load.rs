//! Open-loop load generator for `POST /api/detect` (used by `scripts/loadtest.sh`).
//!
//! Unlike wrk, which waits for each answer before sending the next request, this sends at a
//! fixed rate whatever the server does, so it shows what overload does: the share of 503s,
//! and the latency of the admitted requests separately from the shed ones.
//!
//! `cargo bench --bench load -- URL KEY FILE RATE SECONDS [SOURCE]`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.len() < 5 {
        eprintln!("usage: cargo bench --bench load -- URL KEY FILE RATE SECONDS [SOURCE]");
        return Ok(());
    }
    let (url, key, file) = (args[0].clone(), args[1].clone(), args[2].clone());
    let rate: f64 = args[3].parse()?;
    let seconds: f64 = args[4].parse()?;
    let source = args.get(5).cloned();
    let bytes = std::fs::read(&file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        tellscan::outbound::client::install_crypto_provider();
        let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(1024).build()?;
        let results: Arc<Mutex<BTreeMap<u16, Vec<f64>>>> = Arc::default();
        let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let interval = Duration::from_secs_f64(1.0 / rate);
        let total = (rate * seconds).round() as usize;
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            let due = started + interval * i as u32;
            tokio::time::sleep_until(due.into()).await;
            let (client, url, key, bytes) = (client.clone(), url.clone(), key.clone(), bytes.clone());
            let (results, errors, source) = (Arc::clone(&results), Arc::clone(&errors), source.clone());
            tasks.push(tokio::spawn(async move {
                let part = reqwest::multipart::Part::bytes(bytes).file_name("load.jpg");
                let form = reqwest::multipart::Form::new().part("file", part);
                let mut req = client.post(&url).header("x-api-key", key).multipart(form);
                if let Some(s) = source {
                    req = req.header("x-detection-source", s);
                }
                let t = Instant::now();
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        let ms = t.elapsed().as_secs_f64() * 1000.0;
                        results.lock().await.entry(status).or_default().push(ms);
                    }
                    Err(_) => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let wall = started.elapsed().as_secs_f64();
        let results = results.lock().await;
        let answered: usize = results.values().map(Vec::len).sum();
        println!("offered {total} requests at {rate}/s over {seconds} s; answered {answered} in {wall:.1} s");
        for (status, times) in results.iter() {
            let mut sorted = times.clone();
            sorted.sort_by(f64::total_cmp);
            println!(
                "status {status}: {} ({:.1}%), {:.1}/s, latency ms p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
                sorted.len(),
                100.0 * sorted.len() as f64 / total as f64,
                sorted.len() as f64 / wall,
                percentile(&sorted, 50.0),
                percentile(&sorted, 90.0),
                percentile(&sorted, 99.0),
                sorted.last().copied().unwrap_or(f64::NAN),
            );
        }
        println!("transport errors: {}", errors.load(std::sync::atomic::Ordering::Relaxed));
        anyhow::Ok(())
    })
}
