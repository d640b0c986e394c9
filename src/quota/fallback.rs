//! The in-process per-minute limiter used while the quota store is unreachable and the
//! operator chose `quota.on_store_error = "allow"`: the service keeps answering, but one
//! replica still never admits more than a tier's per-minute limit for a key.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::{QuotaState, TierLimits, WindowKind, Windows};

/// Per-key counters of the current minute, kept in memory only.
#[derive(Debug, Default)]
pub struct FallbackLimiter {
    minutes: Mutex<HashMap<String, (String, u64)>>,
}

impl FallbackLimiter {
    /// Count one request of `key_id` against the per-minute limit; day and month are unknown
    /// while the store is down and are reported with their limits and zero use.
    pub fn admit(&self, key_id: &str, limits: &TierLimits, now: DateTime<Utc>) -> QuotaState {
        let windows = Windows::at(now);
        let minute = &windows.windows[0].id;
        let mut map = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        // forget keys of earlier minutes so the map stays as small as the active key set
        map.retain(|_, (id, _)| id == minute);
        let entry = map.entry(key_id.to_string()).or_insert_with(|| (minute.clone(), 0));
        let admitted = entry.1 < limits.of(WindowKind::Minute);
        if admitted {
            entry.1 += 1;
        }
        QuotaState::from_counts(admitted, limits, &windows, [entry.1, 0, 0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_minute_limit_then_resets() {
        let limiter = FallbackLimiter::default();
        let limits = TierLimits { per_minute: 2, daily: 10, monthly: 10 };
        let t = DateTime::parse_from_rfc3339("2026-11-26T10:00:05Z").unwrap().with_timezone(&Utc);
        assert!(limiter.admit("a", &limits, t).admitted);
        assert!(limiter.admit("a", &limits, t).admitted);
        assert!(!limiter.admit("a", &limits, t).admitted);
        assert!(limiter.admit("b", &limits, t).admitted);
        assert!(limiter.admit("a", &limits, t + chrono::Duration::minutes(1)).admitted);
    }
}
