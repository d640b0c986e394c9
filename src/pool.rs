//! The bounded CPU pool detections run on. Async workers never decode or analyse pixels:
//! they reserve a slot (or shed the request with 503 at once when `workers + queue` slots are
//! taken) and await the result, so latency and memory stay bounded under overload.
//!
//! Each of the `workers` runner threads takes one job at a time from the pool's own wait line
//! and runs it inside a rayon pool of its own, where the detector's parallel parts (the
//! modules, candle's kernels) spread over the cores. One shared rayon pool would not do: a
//! rayon thread waiting inside one job's `join` takes any job queued in its pool, so a request
//! would wait for whole other detections to finish (measured with `scripts/loadtest.sh` at
//! twice capacity: admitted p99 1.2 s against a p50 of 0.25 s).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Threads one detection may spread over at most: the detector has about six parallel
/// parts, so more threads per job only add idle ones.
const MAX_THREADS_PER_JOB: usize = 4;

/// A job waiting for a runner.
type Job = Box<dyn FnOnce() + Send>;

/// The wait line shared with the runner threads.
#[derive(Default)]
struct Line {
    state: Mutex<LineState>,
    ready: Condvar,
}

#[derive(Default)]
struct LineState {
    jobs: VecDeque<Job>,
    /// Set when the pool is dropped: runners finish the line, then end.
    closed: bool,
}

impl Line {
    fn lock(&self) -> std::sync::MutexGuard<'_, LineState> {
        // a job never runs under the lock, so a poisoned lock still holds a consistent line
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job) {
        self.lock().jobs.push_back(job);
        self.ready.notify_one();
    }

    /// The next job, waiting for one; `None` once the line is closed and empty.
    fn next(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// A fixed set of detection threads with a bounded wait line.
pub struct DetectionPool {
    line: Arc<Line>,
    capacity: usize,
    reserved: AtomicUsize,
    running: AtomicUsize,
}

/// A reserved slot; the slot is released when the job that took it ends (or when an unused
/// reservation is dropped).
pub struct Reservation {
    pool: Arc<DetectionPool>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.reserved.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A job that panicked outside the detector's own guards.
#[derive(Debug, thiserror::Error)]
#[error("the detection job failed unexpectedly")]
pub struct JobFailed;

impl DetectionPool {
    /// `workers` jobs at a time and room for `queue` waiting jobs.
    pub fn new(workers: usize, queue: usize) -> anyhow::Result<Arc<DetectionPool>> {
        let workers = workers.max(1);
        let line = Arc::new(Line::default());
        for i in 0..workers {
            let threads = rayon::ThreadPoolBuilder::new()
                .num_threads(workers.min(MAX_THREADS_PER_JOB))
                .thread_name(move |t| format!("tellscan-detect-{i}.{t}"))
                .build()?;
            let line = Arc::clone(&line);
            std::thread::Builder::new().name(format!("tellscan-detect-{i}")).spawn(move || {
                while let Some(job) = line.next() {
                    threads.install(job);
                }
            })?;
        }
        Ok(Arc::new(DetectionPool {
            line,
            capacity: workers + queue,
            reserved: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
        }))
    }

    /// Reserve a slot, or `None` when the pool and its wait line are full.
    pub fn try_reserve(self: &Arc<Self>) -> Option<Reservation> {
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1))
            .ok()
            .map(|_| Reservation { pool: Arc::clone(self) })
    }

    /// Run `job` on the pool. The job runs to its end even when the caller stops waiting,
    /// and keeps its slot until then.
    pub async fn run<T: Send + 'static>(
        &self,
        reservation: Reservation,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobFailed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.line.push(Box::new(move || {
            let pool = Arc::clone(&reservation.pool);
            pool.running.fetch_add(1, Ordering::AcqRel);
            // caught here, so a runner never dies with a job
            let result = catch_unwind(AssertUnwindSafe(job)).map_err(|_| JobFailed);
            pool.running.fetch_sub(1, Ordering::AcqRel);
            drop(reservation);
            let _ = tx.send(result);
        }));
        rx.await.map_err(|_| JobFailed)?
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.reserved.load(Ordering::Acquire).saturating_sub(self.running.load(Ordering::Acquire))
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Slots in all: threads plus the wait line.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Drop for DetectionPool {
    fn drop(&mut self) {
        self.line.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sheds_beyond_capacity_and_frees_slots() {
        let pool = DetectionPool::new(1, 1).unwrap();
        let a = pool.try_reserve().unwrap();
        let b = pool.try_reserve().unwrap();
        assert!(pool.try_reserve().is_none());
        drop(b);
        assert_eq!(pool.run(a, || 41 + 1).await.unwrap(), 42);
        assert!(pool.try_reserve().is_some());
        let c = pool.try_reserve().unwrap();
        assert!(pool.run(c, || panic!("boom")).await.is_err());
        assert_eq!(pool.queued() + pool.running(), 0);
    }

    /// A job waiting inside its own `join` never runs another queued job on its stack, and a
    /// single runner takes jobs in arrival order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_never_nest_and_keep_their_order() {
        use std::cell::Cell;
        use std::time::Duration;
        thread_local!(static IN_JOB: Cell<bool> = const { Cell::new(false) });
        let nested = Arc::new(AtomicUsize::new(0));
        let pool = DetectionPool::new(2, 16).unwrap();
        let jobs = (0..12).map(|_| {
            let reservation = pool.try_reserve().expect("room for every job");
            let (nested, pool) = (Arc::clone(&nested), Arc::clone(&pool));
            async move {
                pool.run(reservation, move || {
                    if IN_JOB.with(|f| f.replace(true)) {
                        nested.fetch_add(1, Ordering::SeqCst);
                    }
                    // the second half is stolen by the pool's other thread while this one waits
                    rayon::join(
                        || std::thread::sleep(Duration::from_millis(15)),
                        || std::thread::sleep(Duration::from_millis(5)),
                    );
                    IN_JOB.with(|f| f.set(false));
                })
                .await
                .unwrap()
            }
        });
        futures_util::future::join_all(jobs).await;
        assert_eq!(nested.load(Ordering::SeqCst), 0, "a job ran inside another job's join");
        assert_eq!(pool.queued() + pool.running(), 0);

        let single = DetectionPool::new(1, 16).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waits = Vec::new();
        for i in 0..6 {
            let reservation = single.try_reserve().unwrap();
            let order = Arc::clone(&order);
            // join_all first polls them in this order, and that is when each joins the line
            waits.push(single.run(reservation, move || order.lock().unwrap().push(i)));
        }
        futures_util::future::join_all(waits).await;
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }
}
