//! The quota gate: admits a request against its key's tier through the store, applies the
//! store-outage policy, refunds server failures, and reads usage for headers and dashboards.

use std::collections::BTreeMap;

use chrono::Utc;

use super::{FallbackLimiter, QuotaState, Source, SourceCounts, TierLimits, Windows};
use crate::auth::key::{KeyId, Tier};
use crate::auth::Principal;
use crate::config::OnStoreError;
use crate::store::{SharedStore, StoreError};

/// What the gate decided.
#[derive(Debug)]
pub enum Decision {
    /// Counted in all three windows; keep the ticket to refund a server failure.
    Admitted(QuotaState, Ticket),
    /// A window is full; nothing was counted.
    Denied(QuotaState),
}

/// How an admitted request was counted, so it can be taken back.
#[derive(Debug, Clone)]
pub struct Ticket {
    key_id: KeyId,
    source: Source,
    windows: Windows,
    /// Counted by the in-process fallback (the store was down): nothing to refund there.
    fallback: bool,
}

/// Why the gate could not decide.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The key's tier is not in the configuration (it was removed after the key was made).
    #[error("the key's tier '{0}' is not configured on this server")]
    UnknownTier(Tier),
    /// The store is down and the policy is to fail closed.
    #[error(transparent)]
    StoreDown(StoreError),
}

/// Admission and usage over one store.
pub struct QuotaGate {
    store: SharedStore,
    tiers: BTreeMap<Tier, TierLimits>,
    policy: OnStoreError,
    fallback: FallbackLimiter,
}

/// The result of [`QuotaGate::admit`] and whether the store failed on the way.
pub struct GateResult {
    /// The decision, or why there is none.
    pub decision: Result<Decision, GateError>,
    /// The store failed (and the policy decided what happened).
    pub store_error: bool,
}

impl QuotaGate {
    /// A gate over `store` with the configured tiers and outage policy.
    pub fn new(store: SharedStore, tiers: BTreeMap<Tier, TierLimits>, policy: OnStoreError) -> QuotaGate {
        QuotaGate { store, tiers, policy, fallback: FallbackLimiter::default() }
    }

    /// The limits of a principal's tier.
    pub fn limits(&self, principal: &Principal) -> Result<TierLimits, GateError> {
        self.tiers.get(&principal.tier).copied().ok_or_else(|| GateError::UnknownTier(principal.tier.clone()))
    }

    /// Count one request of `principal` from `source`, all-or-nothing over the three windows.
    pub async fn admit(&self, principal: &Principal, source: Source) -> GateResult {
        let limits = match self.limits(principal) {
            Ok(l) => l,
            Err(e) => return GateResult { decision: Err(e), store_error: false },
        };
        let windows = Windows::at(Utc::now());
        match self.store.admit(&principal.key_id, &limits, source, &windows).await {
            Ok(a) => {
                let state = QuotaState::from_counts(a.admitted, &limits, &windows, a.counts);
                let decision = if a.admitted {
                    let ticket =
                        Ticket { key_id: principal.key_id.clone(), source, windows, fallback: false };
                    Decision::Admitted(state, ticket)
                } else {
                    Decision::Denied(state)
                };
                GateResult { decision: Ok(decision), store_error: false }
            }
            Err(e) => {
                tracing::warn!(key_id = %principal.key_id, "quota store error: {e}");
                let decision = match self.policy {
                    OnStoreError::Deny => Err(GateError::StoreDown(e)),
                    OnStoreError::Allow => {
                        let state = self.fallback.admit(principal.key_id.as_str(), &limits, windows.at);
                        Ok(if state.admitted {
                            let ticket =
                                Ticket { key_id: principal.key_id.clone(), source, windows, fallback: true };
                            Decision::Admitted(state, ticket)
                        } else {
                            Decision::Denied(state)
                        })
                    }
                };
                GateResult { decision, store_error: true }
            }
        }
    }

    /// Take back an admitted request that the server failed.
    pub async fn refund(&self, ticket: &Ticket) {
        if ticket.fallback {
            return;
        }
        if let Err(e) = self.store.refund(&ticket.key_id, ticket.source, &ticket.windows).await {
            tracing::warn!(key_id = %ticket.key_id, "cannot refund a failed request: {e}");
        }
    }

    /// Current usage of a principal, without counting anything.
    pub async fn usage(&self, principal: &Principal) -> Result<(QuotaState, SourceCounts), GateError> {
        let limits = self.limits(principal)?;
        let windows = Windows::at(Utc::now());
        let usage = self.store.usage(&principal.key_id, &windows).await.map_err(GateError::StoreDown)?;
        let full = (0..3).any(|i| usage.counts[i] >= limits.as_array()[i]);
        Ok((QuotaState::from_counts(!full, &limits, &windows, usage.counts), usage.sources))
    }
}
