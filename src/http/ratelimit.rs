//! Quota headers: `X-RateLimit-Limit/Remaining/Reset` for the most constraining window, and
//! the IETF httpapi draft fields `RateLimit-Policy` (every window) and `RateLimit`.

use poem::http::{HeaderMap, HeaderName, HeaderValue};

use crate::quota::QuotaState;

/// Set the quota headers of `state` on a response.
pub fn apply(headers: &mut HeaderMap, state: &QuotaState) {
    let main = state.constraining();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-ratelimit-limit", main.limit.to_string());
    set("x-ratelimit-remaining", main.remaining().to_string());
    set("x-ratelimit-reset", main.reset_secs.to_string());
    // draft-ietf-httpapi-ratelimit-headers: a named policy per window (q = quota, w = window
    // length in seconds), and the state of the constraining one (r = remaining, t = reset)
    let policy: Vec<String> = state
        .windows
        .iter()
        .map(|w| format!("\"{}\";q={};w={}", w.kind.name(), w.limit, window_secs(w.kind)))
        .collect();
    set("ratelimit-policy", policy.join(", "));
    set("ratelimit", format!("\"{}\";r={};t={}", main.kind.name(), main.remaining(), main.reset_secs));
}

/// Nominal length of a window; a month is 30 days in the policy (its exact end is in `t`).
fn window_secs(kind: crate::quota::WindowKind) -> u64 {
    match kind {
        crate::quota::WindowKind::Minute => 60,
        crate::quota::WindowKind::Day => 86_400,
        crate::quota::WindowKind::Month => 30 * 86_400,
    }
}
