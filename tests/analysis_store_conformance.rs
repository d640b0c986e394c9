//! One conformance suite for the analysis side of both stores (`AnalysisStore`): every check
//! is an async function over a `SharedAnalyses`, and the `conformance!` macro runs each of
//! them against a fresh embedded store and a fresh real Redis. Checks that only make sense
//! for one backend (two replicas on one Redis, reopening the redb file, where images live)
//! follow at the end.
//!
//! Times are fabricated around a fixed instant: the stores take `now` from the caller, so a
//! claim's expiry is tested without sleeping.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::redis::RedisServer;
use tellscan::analyses::{AnalysisError, AnalysisId, AnalysisRecord, AnalysisStatus, Delivery};
use tellscan::auth::key::{AccountId, KeyId};
use tellscan::forensics::Report;
use tellscan::quota::Source;
use tellscan::store::analyses::{Claimed, SharedAnalyses};
use tellscan::store::embedded::EmbeddedStore;
use tellscan::store::redis::RedisStore;

/// Per-operation deadline of the Redis stores under test.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Fixtures

/// `secs` seconds after a fixed instant.
fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 3, 4, 5, 6, 7).single().expect("valid time") + chrono::Duration::seconds(secs)
}

/// The visibility every check claims with.
fn visibility() -> chrono::Duration {
    chrono::Duration::seconds(30)
}

/// A fresh `processing` record, as the submission endpoint builds it.
fn new_record() -> AnalysisRecord {
    AnalysisRecord {
        id: AnalysisId::generate(),
        account: AccountId::generate(),
        key_id: KeyId::generate(),
        status: AnalysisStatus::Processing,
        file_name: None,
        file_type: "image/jpeg".to_string(),
        external_id: None,
        model: None,
        source: Source::Api,
        callback_url: None,
        created_at: at(0),
        completed_at: None,
        result: None,
        error: None,
        attempts: 0,
        deliveries: Vec::new(),
        delivered: false,
    }
}

/// A record with every optional field set, with text that JSON must escape.
fn full_record() -> AnalysisRecord {
    AnalysisRecord {
        file_name: Some("Ünïcode \"quoted\" \\ photo 🖼.jpg".to_string()),
        file_type: "image/png".to_string(),
        external_id: Some("order-42/\"x\"\t".to_string()),
        model: Some("midjourney".to_string()),
        source: Source::Website,
        callback_url: Some("https://hooks.example.com/tellscan?x=1&y=2".to_string()),
        created_at: Utc.timestamp_opt(1_934_000_000, 123_456_789).single().expect("valid time"),
        ..new_record()
    }
}

/// Image bytes unique to `record`, with bytes that are not valid UTF-8.
fn image_of(record: &AnalysisRecord) -> Vec<u8> {
    let mut image = vec![0xFF, 0xD8, 0xFF, 0x00, 0x80, 0xC3, 0x28, 0x0A, 0x0D];
    image.extend_from_slice(record.id.as_str().as_bytes());
    image
}

/// A real detection report of a small synthetic JPEG (computed once).
fn real_report() -> Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT
        .get_or_init(|| {
            let jpeg = common::encode(&common::picture(96, 72), image::ImageFormat::Jpeg);
            common::detector().detect(&jpeg).expect("the synthetic JPEG is analysed")
        })
        .clone()
}

/// The golden report of `tests/golden/report.json`, a result different from [`real_report`].
fn golden_report() -> Report {
    serde_json::from_str(include_str!("golden/report.json")).expect("the golden report deserialises")
}

/// `claimed` completed with `report` at `secs`.
fn completed(claimed: &AnalysisRecord, report: Report, secs: i64) -> AnalysisRecord {
    AnalysisRecord {
        status: AnalysisStatus::Completed,
        completed_at: Some(at(secs)),
        result: Some(report),
        ..claimed.clone()
    }
}

/// `claimed` failed at `secs`.
fn failed(claimed: &AnalysisRecord, secs: i64) -> AnalysisRecord {
    AnalysisRecord {
        status: AnalysisStatus::Failed,
        completed_at: Some(at(secs)),
        error: Some(AnalysisError {
            error: "undecodable_image".to_string(),
            detail: "The file is not an image this service can decode.".to_string(),
        }),
        ..claimed.clone()
    }
}

async fn submit(store: &SharedAnalyses, record: &AnalysisRecord) {
    store.submit(record, &image_of(record)).await.expect("submit");
}

/// Submit a fresh record and return it.
async fn submit_new(store: &SharedAnalyses) -> AnalysisRecord {
    let record = new_record();
    submit(store, &record).await;
    record
}

async fn claim(store: &SharedAnalyses, secs: i64) -> Option<Claimed> {
    store.claim(at(secs), visibility()).await.expect("claim")
}

async fn claim_some(store: &SharedAnalyses, secs: i64) -> Claimed {
    claim(store, secs).await.expect("a job to claim")
}

async fn get(store: &SharedAnalyses, id: &AnalysisId) -> Option<AnalysisRecord> {
    store.get_analysis(id).await.expect("get_analysis")
}

async fn depth(store: &SharedAnalyses) -> (u64, u64) {
    store.queue_depth().await.expect("queue_depth")
}

fn embedded_store() -> (SharedAnalyses, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = EmbeddedStore::open(dir.path()).expect("embedded store opens");
    (Arc::new(store), dir)
}

fn redis_on(server: &RedisServer) -> Arc<RedisStore> {
    Arc::new(RedisStore::connect(&server.url(), 8, STORE_TIMEOUT).expect("redis store builds"))
}

fn redis_store() -> (SharedAnalyses, RedisServer) {
    let server = RedisServer::start();
    let store = redis_on(&server);
    (store, server)
}

// ---------------------------------------------------------------------------------------
// Checks shared by both stores

async fn records_round_trip(store: SharedAnalyses) {
    let plain = new_record();
    let full = full_record();
    // an image of a realistic size, every byte value included
    let big_image: Vec<u8> =
        (0..3 * 1024 * 1024).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    store.submit(&plain, &image_of(&plain)).await.expect("submit");
    store.submit(&full, &big_image).await.expect("submit");
    assert_eq!(get(&store, &plain.id).await, Some(plain.clone()));
    assert_eq!(get(&store, &full.id).await, Some(full.clone()));
    assert_eq!(get(&store, &AnalysisId::generate()).await, None, "an unknown id is not found");

    let first = claim_some(&store, 0).await;
    assert_eq!(first.record, AnalysisRecord { attempts: 1, ..plain.clone() });
    assert_eq!(first.image, image_of(&plain), "the image comes back byte for byte");
    let second = claim_some(&store, 0).await;
    assert_eq!(second.record, AnalysisRecord { attempts: 1, ..full.clone() });
    assert!(second.image == big_image, "the large image comes back byte for byte");
    assert_eq!(get(&store, &full.id).await, Some(second.record.clone()), "the claim is counted");

    // outcomes read back exactly as written, a real report included
    let done = completed(&second.record, real_report(), 40);
    assert!(store.finish(&done, true).await.expect("finish"));
    assert_eq!(get(&store, &full.id).await, Some(done));
    let failure = failed(&first.record, 41);
    assert!(store.finish(&failure, false).await.expect("finish"));
    assert_eq!(get(&store, &plain.id).await, Some(failure));
    submit_new(&store).await;
    let claimed = claim_some(&store, 1).await;
    let golden = completed(&claimed.record, golden_report(), 42);
    assert!(store.finish(&golden, true).await.expect("finish"));
    assert_eq!(get(&store, &golden.id).await, Some(golden));
}

async fn jobs_are_claimed_in_submission_order(store: SharedAnalyses) {
    let mut submitted = Vec::new();
    for _ in 0..3 {
        submitted.push(submit_new(&store).await.id);
    }
    let mut claimed = Vec::new();
    for _ in 0..3 {
        let job = claim_some(&store, 0).await;
        assert_eq!(job.record.status, AnalysisStatus::Processing);
        assert_eq!(job.record.attempts, 1);
        claimed.push(job.record.id);
    }
    assert_eq!(claimed, submitted, "first in, first out");
    assert!(claim(&store, 0).await.is_none(), "a fourth claim finds nothing");
}

async fn concurrent_claims_hand_out_each_job_once(store: SharedAnalyses) {
    let mut submitted = HashSet::new();
    for _ in 0..20 {
        submitted.insert(submit_new(&store).await.id);
    }
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(job) = store.claim(at(0), visibility()).await.expect("claim") {
                    assert_eq!(job.image, image_of(&job.record));
                    mine.push(job.record.id);
                }
                mine
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.expect("worker completes"));
    }
    let distinct: HashSet<AnalysisId> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), distinct.len(), "no job was handed out twice");
    assert_eq!(distinct, submitted, "every job was handed out");
    assert_eq!(depth(&store).await, (0, 20));
}

async fn expired_claims_are_handed_out_again(store: SharedAnalyses) {
    let record = submit_new(&store).await;
    let first = claim_some(&store, 0).await;
    assert_eq!((first.record.id.clone(), first.record.attempts), (record.id.clone(), 1));
    assert!(claim(&store, 10).await.is_none(), "a claim is hidden while it runs");
    assert!(claim(&store, 29).await.is_none(), "a claim is hidden while it runs");

    // the first worker died: the job comes back, before a job submitted later
    let later = submit_new(&store).await;
    let second = claim_some(&store, 31).await;
    assert_eq!(second.record.id, record.id);
    assert_eq!(second.record.attempts, 2);
    assert_eq!(second.image, image_of(&record));
    assert_eq!(get(&store, &record.id).await.expect("present").attempts, 2);
    let next = claim_some(&store, 35).await;
    assert_eq!(next.record.id, later.id, "then the queue");
    assert!(claim(&store, 40).await.is_none(), "the second claim hides it again");
    let third = claim_some(&store, 61).await;
    assert_eq!((third.record.id, third.record.attempts), (record.id, 3));
}

async fn the_first_finisher_wins(store: SharedAnalyses) {
    // two finishes of one claim
    submit_new(&store).await;
    let job = claim_some(&store, 0).await;
    let first = completed(&job.record, real_report(), 5);
    assert!(store.finish(&first, true).await.expect("finish"), "the first finish is recorded");
    let second = completed(&job.record, golden_report(), 6);
    assert!(!store.finish(&second, true).await.expect("finish"), "a second finish loses");
    assert!(!store.finish(&failed(&job.record, 7), false).await.expect("finish"), "so does a failure");
    assert_eq!(get(&store, &job.record.id).await, Some(first), "the first outcome stays");

    // the first worker's claim expires, a second worker finishes, the first comes back late
    submit_new(&store).await;
    let slow = claim_some(&store, 100).await;
    let fast = claim_some(&store, 131).await;
    assert_eq!(fast.record.id, slow.record.id);
    let fast_outcome = completed(&fast.record, golden_report(), 140);
    assert!(store.finish(&fast_outcome, true).await.expect("finish"));
    let late = completed(&slow.record, real_report(), 150);
    assert!(!store.finish(&late, false).await.expect("finish"), "the late worker lost");
    assert_eq!(get(&store, &slow.record.id).await, Some(fast_outcome));

    // the late worker finishes before the second one: it was first, so it wins, and the
    // store's count of claims is kept
    submit_new(&store).await;
    let slow = claim_some(&store, 200).await;
    let fast = claim_some(&store, 231).await;
    assert_eq!((fast.record.id.clone(), fast.record.attempts), (slow.record.id.clone(), 2));
    let late = completed(&slow.record, real_report(), 240);
    assert!(store.finish(&late, true).await.expect("finish"));
    assert!(!store.finish(&completed(&fast.record, golden_report(), 241), true).await.expect("finish"));
    assert_eq!(get(&store, &slow.record.id).await, Some(AnalysisRecord { attempts: 2, ..late }));

    // nothing to finish
    assert!(!store.finish(&completed(&new_record(), real_report(), 300), true).await.expect("finish"));
    assert_eq!(depth(&store).await, (0, 0));
    assert!(claim(&store, 1000).await.is_none(), "finished jobs are never handed out again");

    // a job finished without being claimed (e.g. refused before analysis) leaves the queue
    let unclaimed = submit_new(&store).await;
    assert_eq!(depth(&store).await, (1, 0));
    assert!(store.finish(&failed(&unclaimed, 350), true).await.expect("finish"));
    assert_eq!(depth(&store).await, (0, 0));
    assert!(claim(&store, 360).await.is_none());
    assert_eq!(get(&store, &unclaimed.id).await, Some(failed(&unclaimed, 350)));

    // `processing` is not an outcome: refused, nothing changes
    let record = submit_new(&store).await;
    let job = claim_some(&store, 400).await;
    assert!(!store.finish(&job.record, true).await.expect("finish"));
    assert_eq!(get(&store, &record.id).await, Some(job.record.clone()));
    assert_eq!(depth(&store).await, (0, 1));
    assert!(store.finish(&failed(&job.record, 401), true).await.expect("finish"));
}

async fn finished_analyses_are_swept(store: SharedAnalyses) {
    // images dropped at once are never handed out again
    submit_new(&store).await;
    let job = claim_some(&store, 0).await;
    assert!(store.finish(&completed(&job.record, real_report(), 100), true).await.expect("finish"));
    assert!(claim(&store, 1000).await.is_none());
    assert_eq!(depth(&store).await, (0, 0));

    // three more finished at 200, 300, 400 (images kept), one claimed, one queued
    let mut finished = vec![job.record.id.clone()];
    for secs in [200, 300, 400] {
        submit_new(&store).await;
        let job = claim_some(&store, secs - 10).await;
        let outcome =
            if secs == 300 { failed(&job.record, secs) } else { completed(&job.record, real_report(), secs) };
        assert!(store.finish(&outcome, false).await.expect("finish"));
        finished.push(job.record.id);
    }
    let running = submit_new(&store).await;
    assert_eq!(claim_some(&store, 500).await.record.id, running.id);
    let waiting = submit_new(&store).await;
    assert_eq!(depth(&store).await, (1, 1));

    // images before 1000 go (nothing observable here but that records stay), records
    // finished strictly before 300 go
    assert_eq!(store.sweep_analyses(at(1000), at(300)).await.expect("sweep"), 2);
    assert_eq!(get(&store, &finished[0]).await, None);
    assert_eq!(get(&store, &finished[1]).await, None);
    assert_eq!(
        get(&store, &finished[2]).await.expect("finished at 300 stays").status,
        AnalysisStatus::Failed
    );
    assert_eq!(
        get(&store, &finished[3]).await.expect("finished at 400 stays").status,
        AnalysisStatus::Completed
    );
    assert_eq!(get(&store, &running.id).await.expect("running stays").status, AnalysisStatus::Processing);
    assert_eq!(get(&store, &waiting.id).await.expect("queued stays").status, AnalysisStatus::Processing);
    assert_eq!(depth(&store).await, (1, 1), "the sweep leaves the queue alone");
    assert_eq!(store.sweep_analyses(at(1000), at(300)).await.expect("sweep"), 0, "nothing twice");

    assert_eq!(store.sweep_analyses(at(2000), at(2000)).await.expect("sweep"), 2);
    assert_eq!(get(&store, &finished[2]).await, None);
    assert_eq!(get(&store, &finished[3]).await, None);
    assert!(get(&store, &running.id).await.is_some() && get(&store, &waiting.id).await.is_some());
    let next = claim_some(&store, 510).await;
    assert_eq!(next.record.id, waiting.id, "the queue still works after a sweep");
    assert_eq!(next.image, image_of(&waiting));
}

async fn deleted_analyses_are_gone(store: SharedAnalyses) {
    // queued
    let queued = submit_new(&store).await;
    let other = submit_new(&store).await;
    assert!(store.delete_analysis(&queued.id).await.expect("delete"));
    assert_eq!(get(&store, &queued.id).await, None);
    assert_eq!(depth(&store).await, (1, 0), "its queue entry went with it");
    assert!(!store.delete_analysis(&queued.id).await.expect("delete"), "a second delete finds nothing");
    let claimed = claim_some(&store, 0).await;
    assert_eq!(claimed.record.id, other.id, "the deleted job is never handed out");
    assert!(claim(&store, 0).await.is_none());
    assert!(!store.finish(&failed(&queued, 1), true).await.expect("finish"), "nothing to finish");
    assert_eq!(get(&store, &queued.id).await, None, "a finish does not bring it back");

    // unknown
    assert!(!store.delete_analysis(&AnalysisId::generate()).await.expect("delete"));

    // claimed: the worker's finish loses, and the job never comes back
    assert!(store.delete_analysis(&other.id).await.expect("delete"));
    assert_eq!(depth(&store).await, (0, 0));
    assert!(!store.finish(&completed(&claimed.record, real_report(), 10), true).await.expect("finish"));
    assert_eq!(get(&store, &other.id).await, None);
    assert!(claim(&store, 1000).await.is_none(), "an expired claim of a deleted job is not handed out");

    // finished (image kept): gone, and the sweep does not count it
    let done = submit_new(&store).await;
    let job = claim_some(&store, 2000).await;
    assert!(store.finish(&completed(&job.record, real_report(), 2010), false).await.expect("finish"));
    assert!(store.delete_analysis(&done.id).await.expect("delete"));
    assert_eq!(get(&store, &done.id).await, None);
    assert_eq!(store.sweep_analyses(at(5000), at(5000)).await.expect("sweep"), 0);
    assert_eq!(depth(&store).await, (0, 0));
}

async fn deliveries_update_only_bookkeeping(store: SharedAnalyses) {
    submit_new(&store).await;
    let job = claim_some(&store, 0).await;
    let outcome = completed(&job.record, real_report(), 10);
    assert!(store.finish(&outcome, true).await.expect("finish"));

    let refused =
        Delivery { attempt: 1, at: at(11), status: None, error: Some("connection refused".to_string()) };
    let accepted = Delivery { attempt: 2, at: at(71), status: Some(204), error: None };
    // a stale or tampered copy: only its deliveries count
    let mut update = AnalysisRecord {
        status: AnalysisStatus::Failed,
        result: None,
        error: Some(AnalysisError { error: "x".to_string(), detail: "y".to_string() }),
        attempts: 9,
        external_id: Some("changed".to_string()),
        deliveries: vec![refused.clone()],
        delivered: false,
        ..outcome.clone()
    };
    assert!(store.update_deliveries(&update, None).await.expect("update_deliveries"));
    let expected = AnalysisRecord { deliveries: vec![refused.clone()], ..outcome.clone() };
    assert_eq!(get(&store, &outcome.id).await, Some(expected));

    update.deliveries.push(accepted.clone());
    update.delivered = true;
    assert!(store.update_deliveries(&update, None).await.expect("update_deliveries"));
    let expected = AnalysisRecord { deliveries: vec![refused, accepted], delivered: true, ..outcome.clone() };
    assert_eq!(get(&store, &outcome.id).await, Some(expected));

    // concurrent updates all land on the same, intact record
    let tasks: Vec<_> = (0..8u32)
        .map(|i| {
            let store = Arc::clone(&store);
            let mut update = update.clone();
            update.deliveries =
                vec![Delivery { attempt: i + 3, at: at(100 + i64::from(i)), status: Some(200), error: None }];
            tokio::spawn(async move { store.update_deliveries(&update, None).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.expect("task completes").expect("update_deliveries"));
    }
    let read = get(&store, &outcome.id).await.expect("present");
    assert_eq!(read.deliveries.len(), 1, "one of the updates, whole");
    assert_eq!(
        (read.status, read.result, read.attempts),
        (AnalysisStatus::Completed, outcome.result.clone(), 1)
    );

    assert!(store.delete_analysis(&outcome.id).await.expect("delete"));
    assert!(!store.update_deliveries(&update, None).await.expect("update_deliveries"), "gone");
    assert!(!store.update_deliveries(&new_record(), None).await.expect("update_deliveries"), "never there");
    assert_eq!(get(&store, &update.id).await, None, "an update does not create a record");
}

async fn claim_webhook(store: &SharedAnalyses, secs: i64) -> Option<AnalysisRecord> {
    store.claim_webhook(at(secs), visibility()).await.expect("claim_webhook")
}

/// Submit, claim and finish (completed at `secs`) a fresh record with `callback_url`.
async fn finished_with_callback(
    store: &SharedAnalyses,
    callback_url: Option<&str>,
    secs: i64,
) -> AnalysisRecord {
    let record = AnalysisRecord { callback_url: callback_url.map(str::to_string), ..new_record() };
    submit(store, &record).await;
    let job = claim_some(store, secs).await;
    assert_eq!(job.record.id, record.id);
    let outcome = completed(&job.record, real_report(), secs);
    assert!(store.finish(&outcome, true).await.expect("finish"));
    outcome
}

async fn webhooks_are_scheduled_leased_and_retried(store: SharedAnalyses) {
    let url = Some("https://hooks.example.com/in");
    let silent = finished_with_callback(&store, None, 5).await;
    let hooked = finished_with_callback(&store, url, 10).await;
    assert_eq!(claim_webhook(&store, 9).await, None, "due when it finished, not before");
    let claimed = claim_webhook(&store, 10).await.expect("due at 10");
    assert_eq!(claimed, hooked, "the finished record, as stored");
    assert_eq!(claim_webhook(&store, 10).await, None, "leased to the first sender");
    assert_eq!(claim_webhook(&store, 39).await, None, "until the lease ends");
    let again = claim_webhook(&store, 40).await.expect("a sender that died is replaced");
    assert_eq!(again.id, hooked.id);

    // a failed attempt is recorded and retried when asked
    let refused = Delivery { attempt: 1, at: at(41), status: Some(500), error: None };
    let update = AnalysisRecord { deliveries: vec![refused.clone()], ..again.clone() };
    assert!(store.update_deliveries(&update, Some(at(100))).await.expect("update_deliveries"));
    assert_eq!(claim_webhook(&store, 99).await, None, "not before the retry time");
    let retry = claim_webhook(&store, 100).await.expect("due again at 100");
    assert_eq!(retry.deliveries, vec![refused.clone()], "with the attempts so far");
    let accepted = Delivery { attempt: 2, at: at(101), status: Some(200), error: None };
    let done = AnalysisRecord { deliveries: vec![refused, accepted], delivered: true, ..retry };
    assert!(store.update_deliveries(&done, None).await.expect("update_deliveries"));
    assert_eq!(claim_webhook(&store, 100_000).await, None, "delivered: the schedule ends");
    assert_eq!(get(&store, &hooked.id).await, Some(done));
    assert_eq!(get(&store, &silent.id).await.map(|r| r.deliveries), Some(Vec::new()));

    // a deleted or swept analysis leaves the schedule
    let deleted = finished_with_callback(&store, url, 200).await;
    assert!(store.delete_analysis(&deleted.id).await.expect("delete"));
    let swept = finished_with_callback(&store, url, 300).await;
    assert_eq!(store.sweep_analyses(at(301), at(301)).await.expect("sweep"), 3);
    assert_eq!(get(&store, &swept.id).await, None);
    assert_eq!(claim_webhook(&store, 100_000).await, None, "nothing is sent for data that is gone");
}

async fn concurrent_webhook_claims_hand_out_each_once(store: SharedAnalyses) {
    let mut expected = Vec::new();
    for i in 0..3 {
        expected.push(finished_with_callback(&store, Some("https://hooks.example.com/in"), i).await.id);
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.claim_webhook(at(10), visibility()).await })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        if let Some(record) = task.await.expect("task completes").expect("claim_webhook") {
            got.push(record.id);
        }
    }
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "each due webhook to exactly one sender");
}

async fn queue_depth_follows_the_lifecycle(store: SharedAnalyses) {
    assert_eq!(depth(&store).await, (0, 0));
    for _ in 0..3 {
        submit_new(&store).await;
    }
    assert_eq!(depth(&store).await, (3, 0));
    let a = claim_some(&store, 0).await;
    assert_eq!(depth(&store).await, (2, 1));
    let b = claim_some(&store, 0).await;
    assert_eq!(depth(&store).await, (1, 2));
    assert!(store.finish(&completed(&a.record, real_report(), 5), true).await.expect("finish"));
    assert_eq!(depth(&store).await, (1, 1));
    // `b`'s worker died: its claim counts as claimed until handed out again
    let b_again = claim_some(&store, 31).await;
    assert_eq!(b_again.record.id, b.record.id);
    assert_eq!(depth(&store).await, (1, 1));
    let c = claim_some(&store, 31).await;
    assert_eq!(depth(&store).await, (0, 2));
    assert!(store.delete_analysis(&b.record.id).await.expect("delete"));
    assert_eq!(depth(&store).await, (0, 1));
    assert!(store.finish(&failed(&c.record, 40), false).await.expect("finish"));
    assert_eq!(depth(&store).await, (0, 0));
    assert_eq!(store.sweep_analyses(at(100), at(100)).await.expect("sweep"), 2);
    assert_eq!(depth(&store).await, (0, 0));
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod embedded_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let (store, _dir) = super::embedded_store();
                    super::$check(store).await;
                }
            )*
        }
        mod redis_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let (store, _server) = super::redis_store();
                    super::$check(store).await;
                }
            )*
        }
    };
}

conformance!(
    records_round_trip,
    jobs_are_claimed_in_submission_order,
    concurrent_claims_hand_out_each_job_once,
    expired_claims_are_handed_out_again,
    the_first_finisher_wins,
    finished_analyses_are_swept,
    deleted_analyses_are_gone,
    deliveries_update_only_bookkeeping,
    webhooks_are_scheduled_leased_and_retried,
    concurrent_webhook_claims_hand_out_each_once,
    queue_depth_follows_the_lifecycle,
);

// ---------------------------------------------------------------------------------------
// Redis only

async fn redis_keys(server: &RedisServer) -> Vec<String> {
    let client = redis::Client::open(server.url()).expect("redis client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("raw connection");
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.expect("KEYS");
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_replicas_share_one_queue() {
    let server = RedisServer::start();
    let a: SharedAnalyses = redis_on(&server);
    let b: SharedAnalyses = redis_on(&server);

    let mut submitted = HashSet::new();
    for i in 0..30 {
        let via = if i % 2 == 0 { &a } else { &b };
        submitted.insert(submit_new(via).await.id);
    }
    assert_eq!(depth(&a).await, (30, 0));
    assert_eq!(depth(&b).await, (30, 0));
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(job) = store.claim(at(0), visibility()).await.expect("claim") {
                    mine.push(job.record.id);
                }
                mine
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.expect("worker completes"));
    }
    let distinct: HashSet<AnalysisId> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), 30, "no job was handed out twice across replicas");
    assert_eq!(distinct, submitted);
    assert_eq!(depth(&b).await, (0, 30));
    for id in &distinct {
        let record = get(&a, id).await.expect("present");
        assert_eq!(record.attempts, 1);
        assert!(b.finish(&failed(&record, 10), true).await.expect("finish"));
    }
    assert_eq!(depth(&a).await, (0, 0));

    // a job claimed on replica A whose worker dies is taken over by replica B
    let record = submit_new(&a).await;
    let on_a = claim_some(&a, 100).await;
    assert_eq!(on_a.record.id, record.id);
    assert!(claim(&b, 110).await.is_none());
    let on_b = claim_some(&b, 131).await;
    assert_eq!((on_b.record.id.clone(), on_b.record.attempts), (record.id.clone(), 2));
    let outcome = completed(&on_b.record, real_report(), 140);
    assert!(b.finish(&outcome, true).await.expect("finish"));
    assert!(!a.finish(&completed(&on_a.record, golden_report(), 150), true).await.expect("finish"));
    assert_eq!(get(&a, &record.id).await, Some(outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_layout_and_cleanup() {
    let server = RedisServer::start();
    let store: SharedAnalyses = redis_on(&server);
    let image_key = |id: &AnalysisId| format!("tellscan:an_img:{id}");

    let kept = submit_new(&store).await;
    let dropped =
        AnalysisRecord { callback_url: Some("https://hooks.example.com/in".into()), ..new_record() };
    submit(&store, &dropped).await;
    let queued = submit_new(&store).await;
    let keys = redis_keys(&server).await;
    assert!(keys.iter().all(|k| k.starts_with("tellscan:an")), "{keys:?}");
    assert!(keys.contains(&format!("tellscan:an:{}", kept.id)) && keys.contains(&image_key(&kept.id)));

    let job = claim_some(&store, 0).await;
    assert_eq!(job.record.id, kept.id);
    assert!(store.finish(&completed(&job.record, real_report(), 10), false).await.expect("finish"));
    let job = claim_some(&store, 0).await;
    assert_eq!(job.record.id, dropped.id);
    assert!(store.finish(&completed(&job.record, real_report(), 10), true).await.expect("finish"));
    let keys = redis_keys(&server).await;
    assert!(keys.contains(&"tellscan:an_hooks".to_string()), "webhook scheduled: {keys:?}");
    assert!(keys.contains(&image_key(&kept.id)), "kept until the sweep: {keys:?}");
    assert!(!keys.contains(&image_key(&dropped.id)), "dropped at once: {keys:?}");

    // images of analyses finished before 20 go, records finished before 5 (none) stay
    assert_eq!(store.sweep_analyses(at(20), at(5)).await.expect("sweep"), 0);
    let keys = redis_keys(&server).await;
    assert!(!keys.contains(&image_key(&kept.id)), "swept: {keys:?}");
    assert!(get(&store, &kept.id).await.is_some());

    assert_eq!(store.sweep_analyses(at(20), at(20)).await.expect("sweep"), 2);
    assert!(store.delete_analysis(&queued.id).await.expect("delete"));
    assert_eq!(redis_keys(&server).await, Vec::<String>::new(), "nothing is left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_sweeps_in_batches() {
    let server = RedisServer::start();
    let store: SharedAnalyses = redis_on(&server);
    // more than one batch of the sweep script
    let total: u32 = 600;
    let tasks: Vec<_> = (0..total)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let record = new_record();
                store.submit(&record, &image_of(&record)).await.expect("submit");
                let done = failed(&record, i64::from(i));
                assert!(store.finish(&done, false).await.expect("finish"), "finished without a claim");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task completes");
    }
    assert_eq!(depth(&store).await, (0, 0), "finishing an unclaimed job unqueues it");
    assert_eq!(store.sweep_analyses(at(10_000), at(10_000)).await.expect("sweep"), u64::from(total));
    assert_eq!(redis_keys(&server).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_fails_fast_and_recovers() {
    let mut server = RedisServer::start();
    let store: SharedAnalyses =
        Arc::new(RedisStore::connect(&server.url(), 4, Duration::from_millis(300)).expect("builds"));
    submit_new(&store).await;
    server.stop();
    let started = std::time::Instant::now();
    assert!(store.claim(at(0), visibility()).await.is_err());
    assert!(store.queue_depth().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    server.restart();
    // nothing is persisted by the test server: the store works again, on an empty queue
    let mut recovered = false;
    for _ in 0..50 {
        if store.queue_depth().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store answers again once Redis is back");
    let record = submit_new(&store).await;
    assert_eq!(claim_some(&store, 0).await.record.id, record.id);
}

// ---------------------------------------------------------------------------------------
// Embedded only

/// Whether the redb file in `dir` (not open elsewhere) holds an image for `id`.
fn embedded_has_image(dir: &std::path::Path, id: &AnalysisId) -> bool {
    let db = redb::Database::open(dir.join(tellscan::store::embedded::FILE_NAME)).expect("redb opens");
    let tx = db.begin_read().expect("read transaction");
    let table =
        tx.open_table(redb::TableDefinition::<&str, &[u8]>::new("analysis_images")).expect("image table");
    let found = redb::ReadableTable::get(&table, id.as_str()).expect("read").is_some();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_jobs_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let open =
        || -> SharedAnalyses { Arc::new(EmbeddedStore::open(dir.path()).expect("embedded store opens")) };

    let store = open();
    let first = submit_new(&store).await;
    let second = submit_new(&store).await;
    let third = submit_new(&store).await;
    let job = claim_some(&store, 0).await;
    assert_eq!(job.record.id, first.id);
    drop(store);

    let store = open();
    assert_eq!(depth(&store).await, (2, 1));
    assert_eq!(get(&store, &second.id).await, Some(second.clone()));
    assert_eq!(claim_some(&store, 10).await.record.id, second.id, "the claim survived too");
    let again = claim_some(&store, 31).await;
    assert_eq!((again.record.id.clone(), again.record.attempts), (first.id.clone(), 2));
    assert_eq!(again.image, image_of(&first));
    let outcome = completed(&again.record, real_report(), 40);
    assert!(store.finish(&outcome, false).await.expect("finish"));
    drop(store);

    assert!(embedded_has_image(dir.path(), &first.id), "kept until the sweep");
    let store = open();
    assert_eq!(get(&store, &first.id).await, Some(outcome));
    assert_eq!(claim_some(&store, 35).await.record.id, third.id, "the queue order survived");
    assert_eq!(store.sweep_analyses(at(100), at(0)).await.expect("sweep"), 0);
    drop(store);
    assert!(!embedded_has_image(dir.path(), &first.id), "swept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_reads_before_any_write() {
    let (store, _dir) = embedded_store();
    assert_eq!(depth(&store).await, (0, 0));
    assert_eq!(get(&store, &AnalysisId::generate()).await, None);
    assert!(claim(&store, 0).await.is_none());
    assert!(!store.delete_analysis(&AnalysisId::generate()).await.expect("delete"));
    assert_eq!(store.sweep_analyses(at(0), at(0)).await.expect("sweep"), 0);
}
// ---------------------------------------------------------------------------------------
// Exact floats

/// A record holding the report of a real photograph reads back equal from both stores.
///
/// Needs serde_json's `float_roundtrip` feature: without it serde_json parses some
/// shortest-form floats (`0.35846139480102335`) one ULP off, so such a report (and any record
/// holding it) would not survive a JSON round trip exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_photo_reports_round_trip_exactly() {
    let report = common::detector()
        .detect(&common::read_shared("fixtures/c2pa/IMG_0003.jpg"))
        .expect("the fixture is analysed");
    let (embedded, _dir) = embedded_store();
    let (redis, _server) = redis_store();
    for store in [embedded, redis] {
        submit_new(&store).await;
        let job = claim_some(&store, 0).await;
        let outcome = completed(&job.record, report.clone(), 10);
        assert!(store.finish(&outcome, true).await.expect("finish"));
        assert_eq!(get(&store, &outcome.id).await, Some(outcome));
    }
}
