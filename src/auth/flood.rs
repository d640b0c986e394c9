//! The bound on wrong-secret floods: a client that presents one real key id with ever new
//! wrong secrets would cost one argon2 run (tens of milliseconds of CPU) each, because every
//! new text misses the verification cache. Per key id, at most `wrong_secrets` argon2 runs may
//! fail within a fixed window; after that, the id's unverified presentations are refused for
//! the rest of the window without running argon2.
//!
//! A client that was not flooding keeps working: a presented key whose SHA-256 is the one
//! argon2 last accepted for the id, against the stored hash that is still current, is the
//! same secret, so it is accepted without argon2 even while the id is locked. (A client that
//! never authenticated on this replica before waits for the window to end.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::key::KeyId;

/// How many wrong secrets a key id may cost in argon2 runs per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodLimit {
    /// Failed argon2 verifications allowed per id and window; 0 turns the bound off.
    pub wrong_secrets: u32,
    /// The window's length.
    pub window: Duration,
}

impl Default for FloodLimit {
    /// 10 wrong secrets a minute, the shipped configuration.
    fn default() -> Self {
        FloodLimit { wrong_secrets: 10, window: Duration::from_secs(60) }
    }
}

/// One id's current window: when it started and the argon2 runs it has spent (wrong secrets
/// plus verifications still running, so concurrent attempts cannot overshoot the limit).
struct Window {
    started: Instant,
    spent: u32,
}

/// Entries above which ended windows are swept on insert (ids are real ones only: an unknown
/// id never reaches argon2, so it never gets here).
const SWEEP_AT: usize = 10_000;

/// Per-id wrong-secret windows and the last secret argon2 accepted for each id.
pub(super) struct FloodGuard {
    limit: FloodLimit,
    windows: Mutex<HashMap<KeyId, Window>>,
    /// Per id: SHA-256 of the presented key argon2 accepted last, and the hash it matched.
    accepted: Mutex<HashMap<KeyId, ([u8; 32], String)>>,
    refused: Counter,
}

impl FloodGuard {
    pub(super) fn new(limit: FloodLimit) -> FloodGuard {
        FloodGuard {
            limit,
            windows: Mutex::new(HashMap::new()),
            accepted: Mutex::new(HashMap::new()),
            refused: Counter::default(),
        }
    }

    /// Presentations refused without argon2 because their id was flooded.
    pub(super) fn refused(&self) -> &Counter {
        &self.refused
    }

    /// Count one presentation refused without argon2.
    pub(super) fn refuse(&self) {
        self.refused.inc();
    }

    /// Take one argon2 run for `id`; `false` when the id has spent its window. A taken run is
    /// given back by [`FloodGuard::finish`].
    pub(super) fn try_begin(&self, id: &KeyId) -> bool {
        if self.limit.wrong_secrets == 0 {
            return true;
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.limit.window;
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, w| w.started.elapsed() < window);
        }
        let current =
            windows.entry(id.clone()).or_insert_with(|| Window { started: Instant::now(), spent: 0 });
        if current.started.elapsed() >= window {
            *current = Window { started: Instant::now(), spent: 0 };
        }
        if current.spent >= self.limit.wrong_secrets {
            return false;
        }
        current.spent += 1;
        true
    }

    /// The argon2 run taken by [`FloodGuard::try_begin`] ended: a wrong secret keeps it
    /// spent; a right one gives it back and is remembered as the id's accepted secret.
    pub(super) fn finish(&self, id: &KeyId, fingerprint: [u8; 32], phc: &str, right: bool) {
        if !right {
            return;
        }
        if self.limit.wrong_secrets > 0 {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(current) = windows.get_mut(id) {
                current.spent = current.spent.saturating_sub(1);
            }
        }
        let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        accepted.insert(id.clone(), (fingerprint, phc.to_string()));
    }

    /// Whether `fingerprint` is the key argon2 last accepted for `id` against the hash `phc`
    /// (the stored hash now: a rotation changes it, and then nothing is known to be right).
    pub(super) fn accepted_before(&self, id: &KeyId, fingerprint: &[u8; 32], phc: &str) -> bool {
        use subtle::ConstantTimeEq;
        let accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        accepted
            .get(id)
            .is_some_and(|(known, known_phc)| bool::from(known.ct_eq(fingerprint)) && known_phc == phc)
    }

    /// Drop what is known about `id` (its key changed through this service).
    pub(super) fn forget(&self, id: &KeyId) {
        self.accepted.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> KeyId {
        KeyId::parse("0123456789abcdef").unwrap()
    }

    #[test]
    fn a_window_allows_the_limit_then_refuses_until_it_ends() {
        let guard = FloodGuard::new(FloodLimit { wrong_secrets: 3, window: Duration::from_millis(200) });
        for _ in 0..3 {
            assert!(guard.try_begin(&id()));
            guard.finish(&id(), [1; 32], "phc", false);
        }
        assert!(!guard.try_begin(&id()));
        assert!(!guard.try_begin(&id()));
        std::thread::sleep(Duration::from_millis(250));
        assert!(guard.try_begin(&id()), "a new window starts afresh");
    }

    #[test]
    fn runs_in_flight_count_and_a_right_secret_gives_its_run_back() {
        let guard = FloodGuard::new(FloodLimit { wrong_secrets: 2, window: Duration::from_secs(60) });
        assert!(guard.try_begin(&id()));
        assert!(guard.try_begin(&id()));
        assert!(!guard.try_begin(&id()), "two runs in flight use the window up");
        guard.finish(&id(), [7; 32], "phc-1", true);
        assert!(guard.try_begin(&id()), "the right secret gave its run back");
        assert!(guard.accepted_before(&id(), &[7; 32], "phc-1"));
        assert!(!guard.accepted_before(&id(), &[8; 32], "phc-1"), "another text is not known");
        assert!(!guard.accepted_before(&id(), &[7; 32], "phc-2"), "a rotated hash is not known");
        guard.forget(&id());
        assert!(!guard.accepted_before(&id(), &[7; 32], "phc-1"));
    }

    #[test]
    fn zero_turns_the_bound_off() {
        let guard = FloodGuard::new(FloodLimit { wrong_secrets: 0, window: Duration::from_secs(60) });
        for _ in 0..100 {
            assert!(guard.try_begin(&id()));
            guard.finish(&id(), [1; 32], "phc", false);
        }
    }
}
