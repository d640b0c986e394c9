//! Webhook signatures: `X-Tellscan-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//! `"<t>.<body>"` with the account's webhook secret. Signing the timestamp with the body lets
//! a receiver refuse replays of an old delivery.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "x-tellscan-signature";

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for a delivery of `body` at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

/// Why a signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not `t=<int>,v1=<hex>`.
    #[error("the signature header is malformed")]
    Malformed,
    /// Older or newer than the tolerance.
    #[error("the signature timestamp is outside the tolerance")]
    Stale,
    /// The MAC does not match.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Check a header value against `body`, accepting timestamps within `tolerance_secs` of `now`.
/// The comparison is constant-time.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => tags.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    // several v1 values are allowed so a secret can be rolled over without a gap
    if tags.iter().any(|tag| mac(secret, timestamp, body).verify_slice(tag).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let body = br#"{"id":"a","status":"completed"}"#;
        let header = sign(b"whsec", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify(b"whsec", &header, body, 1_700_000_100, 300), Ok(()));
        assert_eq!(verify(b"other", &header, body, 1_700_000_100, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"whsec", &header, b"{}", 1_700_000_100, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"whsec", &header, body, 1_700_001_000, 300), Err(SignatureError::Stale));
        let forged = header.replace("t=1700000000", "t=1700000001");
        assert_eq!(verify(b"whsec", &forged, body, 1_700_000_100, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"whsec", "v1=00", body, 0, 300), Err(SignatureError::Malformed));
        assert_eq!(verify(b"whsec", "t=1,v1=zz", body, 1, 300), Err(SignatureError::Malformed));
    }

    #[test]
    fn matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
