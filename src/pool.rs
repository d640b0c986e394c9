//! The bounded CPU pool detections run on. Async workers never decode or analyse pixels:
//! they reserve a slot (or shed the request with 503 at once when `workers + queue` slots are
//! taken) and await the result, so latency and memory stay bounded under overload.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A fixed set of detection threads with a bounded wait line.
pub struct DetectionPool {
    pool: rayon::ThreadPool,
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
    /// `workers` threads and room for `queue` waiting jobs.
    pub fn new(workers: usize, queue: usize) -> anyhow::Result<Arc<DetectionPool>> {
        let workers = workers.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("tellscan-detect-{i}"))
            .build()?;
        Ok(Arc::new(DetectionPool {
            pool,
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
        self.pool.spawn(move || {
            let pool = Arc::clone(&reservation.pool);
            pool.running.fetch_add(1, Ordering::AcqRel);
            let result = catch_unwind(AssertUnwindSafe(job)).map_err(|_| JobFailed);
            pool.running.fetch_sub(1, Ordering::AcqRel);
            drop(reservation);
            let _ = tx.send(result);
        });
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

    /// Slots in all (threads + wait line).
    pub fn capacity(&self) -> usize {
        self.capacity
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
}
