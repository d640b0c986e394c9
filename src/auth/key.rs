//! API keys as typed values: `imag_<id>_<secret>` parsed at the edge into [`ApiKey`], and
//! the records the stores keep about them (never the secret itself).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::hexid::{is_lower_hex, random_hex};

/// Prefix of every key; it makes leaked keys easy to find with secret scanners.
pub const KEY_PREFIX: &str = "imag_";
/// Bytes of randomness in a key id (public, 64 bits: enough to make collisions negligible).
const ID_BYTES: usize = 8;
/// Bytes of randomness in a secret (256 bits, far above the 128 the design asks for).
const SECRET_BYTES: usize = 32;

/// The public part of a key: 16 lower-case hex digits, used for lookups, logs and dashboards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// Parse an id; only what [`KeyId::generate`] could have produced is accepted.
    pub fn parse(s: &str) -> Result<KeyId, KeyFormatError> {
        if is_lower_hex(s, ID_BYTES) {
            Ok(KeyId(s.to_string()))
        } else {
            Err(KeyFormatError::Id)
        }
    }

    /// A fresh random id.
    pub fn generate() -> KeyId {
        KeyId(random_hex(ID_BYTES))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = KeyFormatError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        KeyId::parse(&s)
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The account a key belongs to: 16 lower-case hex digits. Keys of one account share its
/// analyses and webhook secret; rotation keeps the account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    /// Parse an account id (the same shape as a key id).
    pub fn parse(s: &str) -> Result<AccountId, KeyFormatError> {
        KeyId::parse(s).map(|id| AccountId(id.0)).map_err(|_| KeyFormatError::Account)
    }

    /// A fresh random account id.
    pub fn generate() -> AccountId {
        AccountId(random_hex(ID_BYTES))
    }

    /// The account of a key created before accounts existed: its own id.
    pub fn of_legacy_key(id: &KeyId) -> AccountId {
        AccountId(id.0.clone())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = KeyFormatError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        AccountId::parse(&s)
    }
}

impl From<AccountId> for String {
    fn from(id: AccountId) -> String {
        id.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key as presented by a client. `Debug` hides the secret so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The public id.
    pub id: KeyId,
    secret: String,
}

impl ApiKey {
    /// Parse `imag_<id>_<secret>`.
    pub fn parse(presented: &str) -> Result<ApiKey, KeyFormatError> {
        let rest = presented.trim().strip_prefix(KEY_PREFIX).ok_or(KeyFormatError::Prefix)?;
        let (id, secret) = rest.split_once('_').ok_or(KeyFormatError::Shape)?;
        let id = KeyId::parse(id)?;
        if secret.len() != 2 * SECRET_BYTES || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeyFormatError::Secret);
        }
        Ok(ApiKey { id, secret: secret.to_string() })
    }

    /// A fresh key with a random id and secret.
    pub fn generate() -> ApiKey {
        ApiKey { id: KeyId::generate(), secret: random_hex(SECRET_BYTES) }
    }

    /// A new secret for an existing id (rotation).
    pub fn with_new_secret(id: KeyId) -> ApiKey {
        ApiKey { id, secret: random_hex(SECRET_BYTES) }
    }

    /// The secret, for hashing and verification only.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The full key text, to be shown to its owner exactly once.
    pub fn reveal(&self) -> String {
        format!("{KEY_PREFIX}{}_{}", self.id, self.secret)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({KEY_PREFIX}{}_…)", self.id)
    }
}

/// Why a presented key is not even shaped like a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// It does not start with `imag_`.
    #[error("API keys start with 'imag_'")]
    Prefix,
    /// It is not `imag_<id>_<secret>`.
    #[error("API keys have the form imag_<id>_<secret>")]
    Shape,
    /// The id is not 16 lower-case hex digits.
    #[error("the key id is not 16 lower-case hex digits")]
    Id,
    /// The secret is not 64 hex digits.
    #[error("the key secret is not 64 hex digits")]
    Secret,
    /// An account id is not 16 lower-case hex digits.
    #[error("the account id is not 16 lower-case hex digits")]
    Account,
}

/// Lifecycle of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Accepted.
    Active,
    /// Refused until enabled again.
    Disabled,
    /// Refused for good.
    Revoked,
}

impl KeyState {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Disabled => "disabled",
            KeyState::Revoked => "revoked",
        }
    }
}

/// A tier name: lower-case `[a-z0-9-]{1,32}`. Whether the tier exists is checked against
/// the configuration where keys are created or changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tier(String);

impl Tier {
    /// Parse a tier name.
    pub fn parse(s: &str) -> Result<Tier, InvalidTier> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Tier(s.to_string()))
        } else {
            Err(InvalidTier(s.chars().take(40).collect()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Tier {
    type Error = InvalidTier;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Tier::parse(&s)
    }
}

impl From<Tier> for String {
    fn from(t: Tier) -> String {
        t.0
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tier name that is not lower-case `[a-z0-9-]{1,32}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tier '{0}' is not a lower-case name of 1-32 letters, digits or '-'")]
pub struct InvalidTier(pub String);

/// What the stores keep about a key. The secret is kept only as an argon2id PHC hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Public id.
    pub id: KeyId,
    /// Owner-chosen label.
    pub name: String,
    /// The account the key belongs to (absent in records written before accounts existed:
    /// see [`KeyRecord::account`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountId>,
    /// Quota tier.
    pub tier: Tier,
    /// Lifecycle state.
    pub state: KeyState,
    /// argon2id PHC string of the secret.
    pub secret_hash: String,
    /// When the key was created.
    pub created_at: DateTime<Utc>,
    /// When the secret was last rotated.
    pub rotated_at: Option<DateTime<Utc>>,
    /// Last successful verification (updated once per key-cache period, not per request).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl KeyRecord {
    /// The key's account.
    pub fn account(&self) -> AccountId {
        self.account.clone().unwrap_or_else(|| AccountId::of_legacy_key(&self.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip() {
        let key = ApiKey::generate();
        let text = key.reveal();
        assert!(text.starts_with("imag_"));
        assert_eq!(ApiKey::parse(&text).unwrap(), key);
        assert!(!format!("{key:?}").contains(key.secret()));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = ApiKey::generate().reveal();
        assert_eq!(ApiKey::parse(&good.replace("imag_", "img_")), Err(KeyFormatError::Prefix));
        assert_eq!(ApiKey::parse("imag_abc"), Err(KeyFormatError::Shape));
        assert_eq!(
            ApiKey::parse(&format!("imag_ABCDEF0123456789_{}", "a".repeat(64))),
            Err(KeyFormatError::Id)
        );
        assert_eq!(ApiKey::parse(&good[..good.len() - 1]), Err(KeyFormatError::Secret));
        assert!(Tier::parse("free").is_ok());
        assert!(Tier::parse("Free").is_err());
        assert!(Tier::parse("").is_err());
    }
}
