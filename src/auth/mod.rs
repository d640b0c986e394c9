//! API keys: parsing ([`key`]), hashing, verification with a short-lived cache, and the
//! management operations shared by the admin API and `tellscan keys`.
//!
//! argon2id costs tens of milliseconds per verification, so it runs once per presented key
//! per cache period: a verified key is cached under the SHA-256 of the presented text (never
//! the text itself). An id the store does not know is refused without running argon2, and a
//! wrong secret is remembered for the same period so a client repeating it costs nothing.
//! Ever new wrong secrets against one real id are bounded per window ([`flood`]).

pub mod flood;
pub mod key;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use chrono::Utc;
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};

use crate::store::{SharedStore, StoreError};
use flood::{FloodGuard, FloodLimit};
use key::{AccountId, ApiKey, KeyFormatError, KeyId, KeyRecord, KeyState, Tier};

/// Who is calling: the verified key's id and tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key id.
    pub key_id: KeyId,
    /// The account the key belongs to.
    pub account: AccountId,
    /// Its tier.
    pub tier: Tier,
}

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `x-api-key` header.
    #[error("the x-api-key header is missing")]
    Missing,
    /// Not shaped like a key.
    #[error("the API key is malformed: {0}")]
    Malformed(#[from] KeyFormatError),
    /// Unknown id or wrong secret (the two are not told apart).
    #[error("the API key is not valid")]
    Invalid,
    /// The key exists but is disabled.
    #[error("the API key is disabled")]
    Disabled,
    /// The key was revoked.
    #[error("the API key has been revoked")]
    Revoked,
    /// The key store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
enum Cached {
    Valid(Principal),
    Refused(KeyState),
    WrongSecret,
}

/// Verifies presented keys and manages key records.
pub struct KeyService {
    store: SharedStore,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], (Instant, KeyId, Cached)>>,
    argon2_runs: Counter,
    inflight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::OnceCell<Cached>>>>,
    /// Bumped by every change made through this service (see `verify_uncached`).
    generation: AtomicU64,
    flood: FloodGuard,
}

/// The result of creating or rotating a key: the record and the plaintext shown once.
#[derive(Debug)]
pub struct IssuedKey {
    /// What the store keeps.
    pub record: KeyRecord,
    /// The full key; give it to its owner and forget it.
    pub key: ApiKey,
}

/// Entries above which expired cache entries are swept on insert.
const CACHE_SWEEP_AT: usize = 10_000;

impl KeyService {
    /// A service over `store`, caching verifications for `ttl`, with the default bound on
    /// wrong-secret floods.
    pub fn new(store: SharedStore, ttl: Duration) -> KeyService {
        KeyService {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
            argon2_runs: Counter::default(),
            inflight: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            flood: FloodGuard::new(FloodLimit::default()),
        }
    }

    /// The same service with another bound on wrong-secret floods.
    pub fn with_flood_limit(mut self, limit: FloodLimit) -> KeyService {
        self.flood = FloodGuard::new(limit);
        self
    }

    /// The store the keys live in.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// How many argon2 verifications this service has run (a metric, and how tests prove that
    /// unknown ids never reach argon2).
    pub fn argon2_runs(&self) -> u64 {
        self.argon2_runs.get()
    }

    /// The argon2 counter itself, for the metrics registry.
    pub fn argon2_counter(&self) -> Counter {
        self.argon2_runs.clone()
    }

    /// The counter of presentations refused without argon2 because their key id had spent
    /// its wrong secrets for the window, for the metrics registry.
    pub fn flood_refusals_counter(&self) -> Counter {
        self.flood.refused().clone()
    }

    /// Verify the `x-api-key` header value.
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<Principal, AuthError> {
        let presented = presented.map(str::trim).filter(|p| !p.is_empty()).ok_or(AuthError::Missing)?;
        let fingerprint: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if let Some(cached) = self.cached(&fingerprint) {
            return cached_outcome(cached);
        }
        let key = ApiKey::parse(presented)?;
        // one verification per presented key at a time: a burst of first requests with a new
        // key waits for the first one's argon2 instead of running its own
        let cell = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(inflight.entry(fingerprint).or_default())
        };
        let outcome = cell.get_or_try_init(|| self.verify_uncached(&key, fingerprint)).await.cloned();
        {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if inflight.get(&fingerprint).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                inflight.remove(&fingerprint);
            }
        }
        cached_outcome(outcome?)
    }

    /// Look the key up and run argon2; remembers the outcome unless the key changed meanwhile.
    async fn verify_uncached(&self, key: &ApiKey, fingerprint: [u8; 32]) -> Result<Cached, AuthError> {
        if let Some(cached) = self.cached(&fingerprint) {
            return Ok(cached);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some(record) = self.store.get_key(&key.id).await? else {
            return Err(AuthError::Invalid);
        };
        let outcome = match record.state {
            KeyState::Active => {
                let right = if self.flood.try_begin(&record.id) {
                    let right = self.verify_secret(key, &record.secret_hash).await;
                    self.flood.finish(&record.id, fingerprint, &record.secret_hash, right);
                    right
                } else if self.flood.accepted_before(&record.id, &fingerprint, &record.secret_hash) {
                    true
                } else {
                    // not cached: the same text may be right, and is tried again after the window
                    self.flood.refuse();
                    return Err(AuthError::Invalid);
                };
                if right {
                    Cached::Valid(Principal {
                        key_id: record.id.clone(),
                        account: record.account(),
                        tier: record.tier.clone(),
                    })
                } else {
                    Cached::WrongSecret
                }
            }
            state => Cached::Refused(state),
        };
        if matches!(outcome, Cached::Valid(_)) {
            // last use is recorded once per cache period, not per request
            if let Err(e) = self.store.touch_key(&record.id, Utc::now()).await {
                tracing::warn!(key_id = %record.id, "cannot record last use: {e}");
            }
        }
        // a change made here while we verified must not be undone by caching the old state
        if self.generation.load(Ordering::Acquire) == generation {
            self.remember(fingerprint, record.id, outcome.clone());
        }
        Ok(outcome)
    }

    async fn verify_secret(&self, key: &ApiKey, phc: &str) -> bool {
        self.argon2_runs.inc();
        let secret = key.secret().to_string();
        let phc = phc.to_string();
        // argon2 is tens of milliseconds of CPU: keep it off the async workers
        tokio::task::spawn_blocking(move || {
            Argon2::default().verify_password(secret.as_bytes(), phc.as_str()).is_ok()
        })
        .await
        .unwrap_or(false)
    }

    fn cached(&self, fingerprint: &[u8; 32]) -> Option<Cached> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(fingerprint).filter(|(at, _, _)| at.elapsed() < self.ttl).map(|(_, _, c)| c.clone())
    }

    fn remember(&self, fingerprint: [u8; 32], id: KeyId, outcome: Cached) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_SWEEP_AT {
            let ttl = self.ttl;
            cache.retain(|_, (at, _, _)| at.elapsed() < ttl);
        }
        cache.insert(fingerprint, (Instant::now(), id, outcome));
    }

    /// Forget every cached verification of `id`, so a change made here applies at once.
    pub fn forget(&self, id: &KeyId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.flood.forget(id);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, (_, cached_id, _)| cached_id != id);
    }

    /// Create a key in a new account.
    pub async fn create(&self, name: &str, tier: Tier) -> anyhow::Result<IssuedKey> {
        self.create_in(name, tier, None).await
    }

    /// Create a key in `account` (a new account when `None`).
    pub async fn create_in(
        &self,
        name: &str,
        tier: Tier,
        account: Option<AccountId>,
    ) -> anyhow::Result<IssuedKey> {
        let key = ApiKey::generate();
        let record = KeyRecord {
            id: key.id.clone(),
            name: clean_name(name)?,
            account: Some(account.unwrap_or_else(AccountId::generate)),
            tier,
            state: KeyState::Active,
            secret_hash: hash_secret(&key).await?,
            created_at: Utc::now(),
            rotated_at: None,
            last_used_at: None,
        };
        self.store.put_key(&record).await?;
        Ok(IssuedKey { record, key })
    }

    /// Every key record.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.store.list_keys().await
    }

    /// One key record.
    pub async fn get(&self, id: &KeyId) -> anyhow::Result<KeyRecord> {
        self.store.get_key(id).await?.ok_or_else(|| anyhow::Error::new(UnknownKey(id.clone())))
    }

    /// Issue a new secret for `id`; the old one stops working at once here and within the
    /// cache period on other replicas. Revoked keys cannot be rotated.
    pub async fn rotate(&self, id: &KeyId) -> anyhow::Result<IssuedKey> {
        let mut record = self.get(id).await?;
        if record.state == KeyState::Revoked {
            return Err(KeyConflict(format!("key {id} is revoked and cannot be rotated")).into());
        }
        let key = ApiKey::with_new_secret(id.clone());
        record.secret_hash = hash_secret(&key).await?;
        record.rotated_at = Some(Utc::now());
        self.store.put_key(&record).await?;
        self.forget(id);
        Ok(IssuedKey { record, key })
    }

    /// Move a key to `state`. A revoked key stays revoked.
    pub async fn set_state(&self, id: &KeyId, state: KeyState) -> anyhow::Result<KeyRecord> {
        let mut record = self.get(id).await?;
        if record.state == KeyState::Revoked && state != KeyState::Revoked {
            return Err(KeyConflict(format!("key {id} is revoked; revocation is final")).into());
        }
        record.state = state;
        self.store.put_key(&record).await?;
        self.forget(id);
        Ok(record)
    }

    /// Move a key to another (configured) tier.
    pub async fn set_tier(&self, id: &KeyId, tier: Tier) -> anyhow::Result<KeyRecord> {
        let mut record = self.get(id).await?;
        record.tier = tier;
        self.store.put_key(&record).await?;
        self.forget(id);
        Ok(record)
    }
}

/// A key id the store does not hold.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no key with id {0}")]
pub struct UnknownKey(pub KeyId);

/// A change the key's state does not allow (a revoked key cannot be rotated or re-enabled).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KeyConflict(pub String);

fn cached_outcome(cached: Cached) -> Result<Principal, AuthError> {
    match cached {
        Cached::Valid(p) => Ok(p),
        Cached::Refused(KeyState::Revoked) => Err(AuthError::Revoked),
        Cached::Refused(_) => Err(AuthError::Disabled),
        Cached::WrongSecret => Err(AuthError::Invalid),
    }
}

/// Key names are labels for humans: 1-100 characters, no control character, not only white
/// space (the pattern `http::declared::KeyNameText` publishes); kept trimmed.
pub(crate) fn clean_name(name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        name.chars().count() <= 100 && !name.chars().any(char::is_control) && !name.trim().is_empty(),
        "a key name is 1-100 printable characters, not only white space"
    );
    Ok(name.trim().to_string())
}

async fn hash_secret(key: &ApiKey) -> anyhow::Result<String> {
    let secret = key.secret().to_string();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(secret.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("cannot hash the key: {e}"))
    })
    .await?
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn keys_share_an_account_and_rotation_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let keys =
            KeyService::new(Arc::new(EmbeddedStore::open(dir.path()).unwrap()), Duration::from_secs(60));
        let free = Tier::parse("free").unwrap();
        let first = keys.create("a", free.clone()).await.unwrap();
        let account = first.record.account();
        let second = keys.create_in("b", free.clone(), Some(account.clone())).await.unwrap();
        assert_eq!(second.record.account(), account);
        let other = keys.create("c", free).await.unwrap();
        assert_ne!(other.record.account(), account);
        let rotated = keys.rotate(&first.record.id).await.unwrap();
        assert_eq!(rotated.record.account(), account);
        let principal = keys.authenticate(Some(&rotated.key.reveal())).await.unwrap();
        assert_eq!(principal.account, account);
    }

    #[test]
    fn a_record_without_an_account_belongs_to_its_own() {
        let json = r#"{"id":"0123456789abcdef","name":"old","tier":"free","state":"active",
            "secret_hash":"$argon2id$x","created_at":"2026-01-01T00:00:00Z","rotated_at":null,"last_used_at":null}"#;
        let record: KeyRecord = serde_json::from_str(json).unwrap();
        assert_eq!(record.account().as_str(), "0123456789abcdef");
    }
}
