//! Quota arithmetic shared by every store: UTC calendar windows, tier limits, detection
//! sources, and the admission result the rate-limit headers are built from.
//!
//! The stores (`crate::store`) only count; everything about *which* counters a request
//! touches and how the answer is read lives here, so both stores read the same way.

mod fallback;
mod gate;

pub use fallback::FallbackLimiter;
pub use gate::{Decision, GateError, GateResult, QuotaGate, Ticket};

use std::fmt;

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// The three calendar windows a request is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// The current UTC minute.
    Minute,
    /// The current UTC day.
    Day,
    /// The current UTC calendar month.
    Month,
}

impl WindowKind {
    /// All windows, shortest first.
    pub const ALL: [WindowKind; 3] = [WindowKind::Minute, WindowKind::Day, WindowKind::Month];

    /// Lower-case name, as used in JSON, headers and store keys.
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Minute => "minute",
            WindowKind::Day => "day",
            WindowKind::Month => "month",
        }
    }

    /// One-letter tag used in store key names (`m`, `d`, `M`).
    pub fn tag(self) -> &'static str {
        match self {
            WindowKind::Minute => "m",
            WindowKind::Day => "d",
            WindowKind::Month => "M",
        }
    }
}

/// One concrete window: its kind, the id that names it in store keys, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Minute, day or month.
    pub kind: WindowKind,
    /// `202611261230` (minute), `20261126` (day) or `202611` (month), in UTC.
    pub id: String,
    /// The instant the window ends and its counter starts again from zero.
    pub ends_at: DateTime<Utc>,
}

impl Window {
    /// The window of `kind` that contains `now`.
    pub fn containing(kind: WindowKind, now: DateTime<Utc>) -> Window {
        let minute_start = now.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(now);
        let day_start = Utc.from_utc_datetime(&now.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default());
        let month_start = day_start.with_day(1).unwrap_or(day_start);
        match kind {
            WindowKind::Minute => Window {
                kind,
                id: now.format("%Y%m%d%H%M").to_string(),
                ends_at: minute_start + Duration::minutes(1),
            },
            WindowKind::Day => {
                Window { kind, id: now.format("%Y%m%d").to_string(), ends_at: day_start + Duration::days(1) }
            }
            WindowKind::Month => {
                let (y, m) = if month_start.month() == 12 {
                    (month_start.year() + 1, 1)
                } else {
                    (month_start.year(), month_start.month() + 1)
                };
                let next = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(month_start);
                Window { kind, id: now.format("%Y%m").to_string(), ends_at: next }
            }
        }
    }

    /// Whole seconds from `now` until the window ends (at least 1).
    pub fn seconds_left(&self, now: DateTime<Utc>) -> u64 {
        let ms = (self.ends_at - now).num_milliseconds().max(0) as u64;
        ms.div_ceil(1000).max(1)
    }
}

/// The three windows containing one instant, minute first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windows {
    /// The instant they were computed for.
    pub at: DateTime<Utc>,
    /// Minute, day, month.
    pub windows: [Window; 3],
}

impl Windows {
    /// The windows containing `now`.
    pub fn at(now: DateTime<Utc>) -> Windows {
        Windows { at: now, windows: WindowKind::ALL.map(|k| Window::containing(k, now)) }
    }
}

/// Limits of one tier, per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierLimits {
    /// Requests per UTC minute.
    pub per_minute: u64,
    /// Requests per UTC day.
    pub daily: u64,
    /// Requests per UTC month.
    pub monthly: u64,
}

impl TierLimits {
    /// The limit of one window.
    pub fn of(&self, kind: WindowKind) -> u64 {
        match kind {
            WindowKind::Minute => self.per_minute,
            WindowKind::Day => self.daily,
            WindowKind::Month => self.monthly,
        }
    }

    /// Limits in window order (minute, day, month).
    pub fn as_array(&self) -> [u64; 3] {
        WindowKind::ALL.map(|k| self.of(k))
    }
}

/// Where a request comes from, parsed from `x-detection-source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// No header: a direct API integration.
    Api,
    /// The browser extension calling this service.
    Extension,
    /// The browser extension's local mode.
    ExtensionLocal,
    /// The website / Studio.
    Website,
}

impl Source {
    /// Every source, in a fixed order (the order of usage reports).
    pub const ALL: [Source; 4] = [Source::Api, Source::Extension, Source::ExtensionLocal, Source::Website];

    /// The values a client may send in `x-detection-source`.
    pub const HEADER_VALUES: [&'static str; 3] = ["extension", "extension-local", "website"];

    /// Parse the header value; `None` (no header) is [`Source::Api`].
    pub fn from_header(value: Option<&str>) -> Result<Source, UnknownSource> {
        match value.map(str::trim) {
            None => Ok(Source::Api),
            Some("extension") => Ok(Source::Extension),
            Some("extension-local") => Ok(Source::ExtensionLocal),
            Some("website") => Ok(Source::Website),
            Some(other) => Err(UnknownSource(other.chars().take(64).collect())),
        }
    }

    /// The name used in JSON, metrics and store keys.
    pub fn name(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Extension => "extension",
            Source::ExtensionLocal => "extension-local",
            Source::Website => "website",
        }
    }

    /// Whether the image came through the browser extension (re-encoded, resized).
    pub fn is_extension(self) -> bool {
        matches!(self, Source::Extension | Source::ExtensionLocal)
    }
}

/// An `x-detection-source` value that is not one of [`Source::HEADER_VALUES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("x-detection-source '{0}' is not accepted; use one of: extension, extension-local, website (or leave it out)")]
pub struct UnknownSource(pub String);

/// One window's state as reported to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowState {
    /// Which window.
    pub kind: WindowKind,
    /// The tier's limit for it.
    pub limit: u64,
    /// Requests counted in it so far (after this one, when admitted).
    pub used: u64,
    /// Seconds until it resets.
    pub reset_secs: u64,
}

impl WindowState {
    /// Requests left in the window.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// The outcome of one admission attempt, or a read of the current usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaState {
    /// Whether the request was admitted (and counted in all three windows).
    pub admitted: bool,
    /// Minute, day, month.
    pub windows: [WindowState; 3],
}

impl QuotaState {
    /// Build the state from the counts a store returned for `windows`.
    pub fn from_counts(admitted: bool, limits: &TierLimits, windows: &Windows, counts: [u64; 3]) -> Self {
        let states = [0, 1, 2].map(|i| {
            let w = &windows.windows[i];
            WindowState {
                kind: w.kind,
                limit: limits.of(w.kind),
                used: counts[i],
                reset_secs: w.seconds_left(windows.at),
            }
        });
        QuotaState { admitted, windows: states }
    }

    /// The window that constrains the client most: a full window when denied (the one that
    /// stays full longest, since that is when a retry can succeed), otherwise the one with the
    /// fewest requests left (the longer window on ties: it is the more informative).
    pub fn constraining(&self) -> WindowState {
        let full = self.windows.iter().filter(|w| w.remaining() == 0).max_by_key(|w| w.reset_secs);
        if let Some(w) = full {
            return *w;
        }
        *self
            .windows
            .iter()
            .min_by(|a, b| a.remaining().cmp(&b.remaining()).then(b.reset_secs.cmp(&a.reset_secs)))
            .unwrap_or(&self.windows[0])
    }

    /// Seconds a denied client should wait before a retry can be admitted.
    pub fn retry_after(&self) -> u64 {
        self.constraining().reset_secs
    }
}

/// Per-source request counts for the current day and month.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceCounts {
    /// Counts in the current UTC day, by source name.
    pub day: std::collections::BTreeMap<String, u64>,
    /// Counts in the current UTC month, by source name.
    pub month: std::collections::BTreeMap<String, u64>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_carry_their_id_and_end() {
        let w = Windows::at(at("2026-12-31T23:59:30.250Z"));
        assert_eq!(w.windows[0].id, "202612312359");
        assert_eq!(w.windows[1].id, "20261231");
        assert_eq!(w.windows[2].id, "202612");
        let next = at("2027-01-01T00:00:00Z");
        assert!(w.windows.iter().all(|x| x.ends_at == next));
        assert_eq!(w.windows[0].seconds_left(w.at), 30);
        let feb = Windows::at(at("2028-02-29T12:00:00Z"));
        assert_eq!(feb.windows[2].ends_at, at("2028-03-01T00:00:00Z"));
        assert_eq!(feb.windows[1].seconds_left(feb.at), 12 * 3600);
    }

    #[test]
    fn sources_parse_from_the_header() {
        assert_eq!(Source::from_header(None), Ok(Source::Api));
        assert_eq!(Source::from_header(Some("extension-local")), Ok(Source::ExtensionLocal));
        assert!(Source::from_header(Some("api")).is_err());
        assert!(Source::from_header(Some("Website")).is_err());
    }

    #[test]
    fn the_full_window_that_lasts_longest_constrains() {
        let limits = TierLimits { per_minute: 10, daily: 5, monthly: 100 };
        let w = Windows::at(at("2026-11-26T10:00:00Z"));
        let s = QuotaState::from_counts(false, &limits, &w, [5, 5, 5]);
        assert_eq!(s.constraining().kind, WindowKind::Day);
        assert_eq!(s.retry_after(), 14 * 3600);
        let s = QuotaState::from_counts(true, &limits, &w, [1, 1, 1]);
        assert_eq!(s.constraining().kind, WindowKind::Day);
        let s = QuotaState::from_counts(true, &limits, &w, [8, 1, 1]);
        assert_eq!(s.constraining().kind, WindowKind::Minute);
        assert_eq!(s.constraining().remaining(), 2);
    }
}
