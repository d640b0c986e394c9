//! End-to-end load test of the asynchronous analyses API (used by
//! `scripts/analyses_loadtest.sh`).
//!
//! It creates a webhook secret, starts a loopback webhook receiver, then runs two phases:
//!
//! - steady: FILE submitted at RATE per second for SECONDS (open loop: sent on schedule
//!   whatever the server does), each with a `callback_url` to the receiver;
//! - burst: once the steady phase has finished, BURST submissions sent at once, with the
//!   analysis queue depth (`tellscan_analyses_queued` + `tellscan_analyses_processing` from
//!   `/metrics`) sampled every 100 ms until it drains.
//!
//! For each phase it reports the submission answer latency, submit-to-completed latency from
//! the server's own timestamps (`completed_at - created_at` of the poll body) and as the
//! client saw it (submission sent to webhook received), webhook delivery latency (arrival at
//! the receiver against `completed_at`), outcomes, throughput and what `/metrics` counted.
//! Server timestamps are compared with this process's wall clock: run it on the same machine.
//!
//! `cargo bench --bench analyses_load -- BASE_URL KEY FILE RATE SECONDS BURST`

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::Data;
use poem::{handler, post, EndpointExt, Request, Route, Server};
use serde_json::Value;

/// How often the queue depth is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Give up waiting for webhooks after this long without a new one.
const STALL: Duration = Duration::from_secs(30);
/// Accepted clock skew of webhook signatures.
const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// One webhook arrival.
struct Arrival {
    /// Wall-clock time of the first arrival (compared with the server's `completed_at`).
    wall: DateTime<Utc>,
    /// Monotonic time of the first arrival (compared with when the submission was sent).
    at: Instant,
}

/// The loopback webhook receiver's state.
struct Receiver {
    secret: String,
    arrivals: Mutex<HashMap<String, Arrival>>,
    deliveries: AtomicUsize,
    repeats: AtomicUsize,
    bad_signatures: AtomicUsize,
    unparsable: AtomicUsize,
}

impl Receiver {
    fn arrived(&self, ids: &[String]) -> usize {
        let arrivals = self.arrivals.lock().expect("receiver lock");
        ids.iter().filter(|id| arrivals.contains_key(*id)).count()
    }
}

#[handler]
fn hook(req: &Request, body: Vec<u8>, receiver: Data<&Arc<Receiver>>) -> &'static str {
    let wall = Utc::now();
    let at = Instant::now();
    receiver.deliveries.fetch_add(1, Ordering::Relaxed);
    let signature = req.header("x-tellscan-signature").unwrap_or_default();
    let verified = tellscan::outbound::signature::verify(
        receiver.secret.as_bytes(),
        signature,
        &body,
        wall.timestamp(),
        SIGNATURE_TOLERANCE_SECS,
    );
    if verified.is_err() {
        receiver.bad_signatures.fetch_add(1, Ordering::Relaxed);
    }
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string));
    let Some(id) = id else {
        receiver.unparsable.fetch_add(1, Ordering::Relaxed);
        return "ok";
    };
    let mut arrivals = receiver.arrivals.lock().expect("receiver lock");
    match arrivals.entry(id) {
        Entry::Vacant(e) => {
            e.insert(Arrival { wall, at });
        }
        Entry::Occupied(_) => {
            receiver.repeats.fetch_add(1, Ordering::Relaxed);
        }
    }
    "ok"
}

/// One submission as the client saw it.
struct Sent {
    sent_wall: DateTime<Utc>,
    sent_at: Instant,
    answered_at: Instant,
    status: u16,
    id: Option<String>,
    estimate_secs: Option<f64>,
    error: Option<String>,
}

impl Sent {
    fn answer_ms(&self) -> f64 {
        (self.answered_at - self.sent_at).as_secs_f64() * 1000.0
    }
}

/// One poll of a finished (or given up on) analysis.
struct Polled {
    status: String,
    created_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    webhook_status: String,
    attempts: usize,
    /// `result.report.elapsed_ms`: the detection itself.
    detection_ms: Option<f64>,
}

/// One queue-depth sample.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    queued: f64,
    processing: f64,
}

/// Everything the phases share.
struct Bench {
    client: reqwest::Client,
    base: String,
    key: String,
    bytes: Vec<u8>,
    file_name: String,
    callback_url: String,
    receiver: Arc<Receiver>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// `n N, p50 .. p99 .. max ..` of `values`, in the unit they are in.
fn stats(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "n {:>4}  p50 {:>8.1}  p99 {:>8.1}  max {:>8.1}",
        sorted.len(),
        percentile(&sorted, 50.0),
        percentile(&sorted, 99.0),
        sorted.last().copied().unwrap_or(f64::NAN)
    )
}

fn parse_time(v: &Value, field: &str) -> Option<DateTime<Utc>> {
    v.get(field)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().map_or(f64::NAN, |us| us as f64 / 1000.0)
}

/// Every sample line of an OpenMetrics text, keyed by name and labels.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

impl Bench {
    async fn metrics(&self) -> anyhow::Result<HashMap<String, f64>> {
        let text = self.client.get(format!("{}/metrics", self.base)).send().await?.text().await?;
        Ok(parse_metrics(&text))
    }

    /// Submit the file once; `label` becomes its `external_id`.
    async fn submit(&self, label: String) -> Sent {
        let part = reqwest::multipart::Part::bytes(self.bytes.clone())
            .file_name(self.file_name.clone())
            .mime_str("image/jpeg")
            .expect("a valid MIME type");
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("callback_url", self.callback_url.clone())
            .text("external_id", label);
        let request = self
            .client
            .post(format!("{}/api/v1/analyses", self.base))
            .header("x-api-key", &self.key)
            .multipart(form);
        let sent_wall = Utc::now();
        let sent_at = Instant::now();
        let answer = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let body = response.bytes().await?;
            anyhow::Ok((status, body))
        }
        .await;
        let answered_at = Instant::now();
        let mut sent =
            Sent { sent_wall, sent_at, answered_at, status: 0, id: None, estimate_secs: None, error: None };
        match answer {
            Ok((status, body)) => {
                sent.status = status;
                let json: Value = serde_json::from_slice(&body).unwrap_or_default();
                if status == 202 {
                    sent.id = json.get("id").and_then(Value::as_str).map(str::to_string);
                    sent.estimate_secs = json.get("estimated_completion_seconds").and_then(Value::as_f64);
                } else {
                    sent.error = Some(String::from_utf8_lossy(&body).chars().take(200).collect());
                }
            }
            Err(e) => sent.error = Some(e.to_string()),
        }
        sent
    }

    async fn poll(&self, id: &str) -> anyhow::Result<Polled> {
        let v: Value = self
            .client
            .get(format!("{}/api/v1/analyses/{id}", self.base))
            .header("x-api-key", &self.key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let webhook = v.get("webhook");
        Ok(Polled {
            status: v.get("status").and_then(Value::as_str).unwrap_or("?").to_string(),
            created_at: parse_time(&v, "created_at"),
            completed_at: parse_time(&v, "completed_at"),
            webhook_status: webhook
                .and_then(|w| w.get("status"))
                .and_then(Value::as_str)
                .unwrap_or("none")
                .to_string(),
            attempts: webhook.and_then(|w| w.get("deliveries")).and_then(Value::as_array).map_or(0, Vec::len),
            detection_ms: v.pointer("/result/report/elapsed_ms").and_then(Value::as_f64),
        })
    }

    /// Wait until a webhook has arrived for every id, or none for `STALL`; the ids still
    /// missing.
    async fn wait_for_webhooks(&self, ids: &[String]) -> usize {
        let mut seen = 0;
        let mut progress = Instant::now();
        loop {
            let arrived = self.receiver.arrived(ids);
            if arrived == ids.len() {
                return 0;
            }
            if arrived > seen {
                seen = arrived;
                progress = Instant::now();
            } else if progress.elapsed() > STALL {
                return ids.len() - arrived;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait for the phase's analyses, poll each once, and print the phase's figures.
    async fn finish_phase(
        &self,
        name: &str,
        started: Instant,
        sent: &[Sent],
        before: &HashMap<String, f64>,
    ) -> anyhow::Result<()> {
        let ids: Vec<String> = sent.iter().filter_map(|s| s.id.clone()).collect();
        let missing = self.wait_for_webhooks(&ids).await;
        let waited = started.elapsed().as_secs_f64();
        // the delivery is recorded after the receiver answers: give the last one a moment
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut polls = HashMap::new();
        let mut poll_errors = 0;
        for id in &ids {
            match self.poll(id).await {
                Ok(p) => {
                    polls.insert(id.clone(), p);
                }
                Err(_) => poll_errors += 1,
            }
        }
        let after = self.metrics().await.unwrap_or_default();

        println!("== {name}");
        let mut by_status: HashMap<u16, usize> = HashMap::new();
        for s in sent {
            *by_status.entry(s.status).or_default() += 1;
        }
        let mut statuses: Vec<_> = by_status.into_iter().collect();
        statuses.sort_unstable();
        let statuses: Vec<String> = statuses
            .iter()
            .map(|(s, n)| if *s == 0 { format!("transport error: {n}") } else { format!("{s}: {n}") })
            .collect();
        println!("submissions: {} ({})", sent.len(), statuses.join(", "));
        if let Some(e) = sent.iter().find_map(|s| s.error.as_ref()) {
            println!("  first error: {e}");
        }
        let answers: Vec<f64> = sent.iter().filter(|s| s.status == 202).map(Sent::answer_ms).collect();
        println!("submission answer ms           {}", stats(&answers));
        let estimates: Vec<f64> = sent.iter().filter_map(|s| s.estimate_secs).collect();
        println!("estimated_completion_seconds   {}", stats(&estimates));

        let mut outcome: HashMap<&str, usize> = HashMap::new();
        let mut webhook_states: HashMap<&str, usize> = HashMap::new();
        let mut extra_attempts = 0;
        let mut server_ms = Vec::new();
        let mut client_ms = Vec::new();
        let mut delivery_ms = Vec::new();
        let mut detection_ms = Vec::new();
        let mut first_sent: Option<DateTime<Utc>> = None;
        let mut last_completed: Option<DateTime<Utc>> = None;
        let mut last_arrival: Option<Instant> = None;
        {
            let arrivals = self.receiver.arrivals.lock().expect("receiver lock");
            for s in sent {
                let Some(id) = &s.id else { continue };
                first_sent = Some(first_sent.map_or(s.sent_wall, |t| t.min(s.sent_wall)));
                let arrival = arrivals.get(id);
                if let Some(a) = arrival {
                    client_ms.push((a.at - s.sent_at).as_secs_f64() * 1000.0);
                    last_arrival = Some(last_arrival.map_or(a.at, |t| t.max(a.at)));
                }
                let Some(p) = polls.get(id) else { continue };
                *outcome.entry(p.status.as_str()).or_default() += 1;
                *webhook_states.entry(p.webhook_status.as_str()).or_default() += 1;
                extra_attempts += p.attempts.saturating_sub(1);
                detection_ms.extend(p.detection_ms);
                if let Some(done) = p.completed_at {
                    last_completed = Some(last_completed.map_or(done, |t| t.max(done)));
                    if let Some(created) = p.created_at {
                        server_ms.push(ms_between(created, done));
                    }
                    if let Some(a) = arrival {
                        delivery_ms.push(ms_between(done, a.wall));
                    }
                }
            }
        }
        let mut outcome: Vec<_> = outcome.into_iter().collect();
        outcome.sort_unstable();
        let mut webhook_states: Vec<_> = webhook_states.into_iter().collect();
        webhook_states.sort_unstable();
        println!(
            "outcomes: completed {}, failed {}, other {:?}; poll errors {poll_errors}",
            outcome.iter().find(|(s, _)| *s == "completed").map_or(0, |(_, n)| *n),
            outcome.iter().find(|(s, _)| *s == "failed").map_or(0, |(_, n)| *n),
            outcome.iter().filter(|(s, _)| *s != "completed" && *s != "failed").collect::<Vec<_>>(),
        );
        println!(
            "webhooks: {} of {} arrived ({missing} missing after waiting {waited:.1} s); poll says {:?}; retries {extra_attempts}",
            ids.len() - missing,
            ids.len(),
            webhook_states,
        );
        println!("submit->completed ms (server)  {}", stats(&server_ms));
        println!("submit->webhook ms (client)    {}", stats(&client_ms));
        println!("completed->webhook ms          {}", stats(&delivery_ms));
        println!("detection ms (report)          {}", stats(&detection_ms));
        if let (Some(first), Some(last)) = (first_sent, last_completed) {
            let span = ms_between(first, last) / 1000.0;
            println!(
                "throughput: {} completed in {span:.1} s from first submission to last completion = {:.2}/s",
                server_ms.len(),
                server_ms.len() as f64 / span
            );
        }
        if let Some(last) = last_arrival {
            let span = (last - started).as_secs_f64();
            println!(
                "  client view: last webhook {span:.1} s after the first submission = {:.2}/s",
                client_ms.len() as f64 / span
            );
        }
        let delta =
            |name: &str| after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0);
        println!(
            "server counters: submitted +{}, completed +{}, failed +{}, webhook attempts +{}, webhook failures +{}",
            delta("tellscan_analyses_submitted_total"),
            delta("tellscan_analyses_completed_total"),
            delta("tellscan_analyses_failed_total"),
            delta("tellscan_webhook_attempts_total"),
            delta("tellscan_webhook_failures_total"),
        );
        self.report_depth(started);
        Ok(())
    }

    /// Max queue depth since `started`, when it drained, and a short time series.
    fn report_depth(&self, started: Instant) {
        let samples: Vec<Sample> =
            self.samples.lock().expect("samples lock").iter().filter(|s| s.at >= started).copied().collect();
        let Some(max) =
            samples.iter().max_by(|a, b| (a.queued + a.processing).total_cmp(&(b.queued + b.processing)))
        else {
            println!("queue depth: no samples");
            return;
        };
        let max_at = (max.at - started).as_secs_f64();
        let drained = samples
            .iter()
            .skip_while(|s| s.at <= max.at)
            .find(|s| s.queued + s.processing == 0.0)
            .map(|s| (s.at - started).as_secs_f64());
        println!(
            "queue depth (queued+processing, {} samples every {} ms): max {} ({} queued + {} processing) at {max_at:.1} s; drained at {}",
            samples.len(),
            SAMPLE_EVERY.as_millis(),
            max.queued + max.processing,
            max.queued,
            max.processing,
            drained.map_or("never".to_string(), |d| format!("{d:.1} s")),
        );
        let end = samples.last().map_or(0.0, |s| (s.at - started).as_secs_f64());
        let step = (end / 30.0).ceil().max(1.0);
        let mut line = Vec::new();
        let mut next = 0.0;
        for s in &samples {
            let t = (s.at - started).as_secs_f64();
            if t >= next {
                line.push(format!("{:.0}s:{}+{}", t, s.queued, s.processing));
                next += step;
                while next <= t {
                    next += step;
                }
            }
        }
        println!("  series (t: queued+processing, every {step:.0} s): {}", line.join(" "));
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.len() < 6 {
        eprintln!("usage: cargo bench --bench analyses_load -- BASE_URL KEY FILE RATE SECONDS BURST");
        return Ok(());
    }
    let base = args[0].trim_end_matches('/').to_string();
    let key = args[1].clone();
    let file = args[2].clone();
    let rate: f64 = args[3].parse().context("RATE")?;
    let seconds: f64 = args[4].parse().context("SECONDS")?;
    let burst: usize = args[5].parse().context("BURST")?;
    let bytes = std::fs::read(&file).with_context(|| format!("reading {file}"))?;
    let (width, height) = image::ImageReader::open(&file)?.with_guessed_format()?.into_dimensions()?;
    println!(
        "image {file}: {width}x{height} ({:.2} MP), {} bytes",
        f64::from(width) * f64::from(height) / 1e6,
        bytes.len()
    );
    let file_name = std::path::Path::new(&file)
        .file_name()
        .map_or("load.jpg".to_string(), |n| n.to_string_lossy().into_owned());

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        tellscan::outbound::client::install_crypto_provider();
        let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(1024).build()?;

        let secret: Value = client
            .post(format!("{base}/api/v1/webhooks/secret"))
            .header("x-api-key", &key)
            .send()
            .await?
            .error_for_status()
            .context("creating the webhook secret")?
            .json()
            .await?;
        let secret =
            secret.get("secret").and_then(Value::as_str).context("no secret in the answer")?.to_string();

        let receiver = Arc::new(Receiver {
            secret,
            arrivals: Mutex::default(),
            deliveries: AtomicUsize::new(0),
            repeats: AtomicUsize::new(0),
            bad_signatures: AtomicUsize::new(0),
            unparsable: AtomicUsize::new(0),
        });
        let acceptor = TcpAcceptor::from_tokio(tokio::net::TcpListener::bind("127.0.0.1:0").await?)?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .context("the receiver has no address")?;
        let app = Route::new().at("/hook", post(hook)).data(Arc::clone(&receiver));
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        let callback_url = format!("http://127.0.0.1:{port}/hook");
        println!("webhook receiver on {callback_url}");

        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let bench = Arc::new(Bench {
            client,
            base,
            key,
            bytes,
            file_name,
            callback_url,
            receiver: Arc::clone(&receiver),
            samples: Arc::clone(&samples),
        });

        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (bench, stop) = (Arc::clone(&bench), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SAMPLE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let at = Instant::now();
                    if let Ok(m) = bench.metrics().await {
                        let queued = m.get("tellscan_analyses_queued").copied().unwrap_or(f64::NAN);
                        let processing = m.get("tellscan_analyses_processing").copied().unwrap_or(f64::NAN);
                        bench.samples.lock().expect("samples lock").push(Sample { at, queued, processing });
                    }
                }
            })
        };

        // steady phase: open loop at RATE
        let before = bench.metrics().await?;
        let total = (rate * seconds).round() as usize;
        let interval = Duration::from_secs_f64(1.0 / rate);
        println!("-- steady: {total} submissions at {rate}/s over {seconds} s, then wait for every webhook");
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            tokio::time::sleep_until((started + interval * i as u32).into()).await;
            let bench = Arc::clone(&bench);
            tasks.push(tokio::spawn(async move { bench.submit(format!("steady-{i}")).await }));
        }
        let mut sent = Vec::with_capacity(total);
        for t in tasks {
            sent.push(t.await?);
        }
        bench.finish_phase("steady", started, &sent, &before).await?;

        // burst phase: BURST at once
        let before = bench.metrics().await?;
        println!("-- burst: {burst} submissions at once, then wait for every webhook");
        let started = Instant::now();
        let tasks: Vec<_> = (0..burst)
            .map(|i| {
                let bench = Arc::clone(&bench);
                tokio::spawn(async move { bench.submit(format!("burst-{i}")).await })
            })
            .collect();
        let mut sent = Vec::with_capacity(burst);
        for t in tasks {
            sent.push(t.await?);
        }
        println!("(all {burst} submissions answered after {:.1} s)", started.elapsed().as_secs_f64());
        bench.finish_phase("burst", started, &sent, &before).await?;

        stop.store(true, Ordering::Relaxed);
        let _ = sampler.await;
        println!(
            "receiver: {} deliveries, {} repeats, {} bad signatures, {} unparsable bodies",
            receiver.deliveries.load(Ordering::Relaxed),
            receiver.repeats.load(Ordering::Relaxed),
            receiver.bad_signatures.load(Ordering::Relaxed),
            receiver.unparsable.load(Ordering::Relaxed),
        );
        anyhow::Ok(())
    })
}
