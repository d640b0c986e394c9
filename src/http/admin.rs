//! `/admin/keys`: key management behind the admin token (`Authorization: Bearer <token>`),
//! the same operations as `tellscan keys`.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::auth::Bearer;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::ApiTags;
use super::declared::{AccountIdText, Declared, KeyIdText, KeyNameText, TierText};
use super::errors::ApiError;
use super::AppState;
use crate::auth::key::{AccountId, KeyId, KeyRecord, KeyState, Tier};
use crate::auth::{IssuedKey, KeyConflict, UnknownKey};

/// The admin token, `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct AdminToken(Bearer);

/// A key record as the admin API shows it (never the secret or its hash).
#[derive(Debug, Object)]
pub struct KeyView {
    /// Public id.
    pub id: String,
    /// Label.
    pub name: String,
    /// The account the key belongs to (its keys share analyses and the webhook secret).
    pub account: String,
    /// Tier.
    pub tier: String,
    /// `active`, `disabled` or `revoked`.
    pub state: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, when rotated; null before the first rotation.
    #[oai(nullable)]
    pub rotated_at: Option<String>,
    /// RFC 3339, last verification (granularity: the key cache period); null before the first.
    #[oai(nullable)]
    pub last_used_at: Option<String>,
}

impl From<&KeyRecord> for KeyView {
    fn from(r: &KeyRecord) -> Self {
        KeyView {
            id: r.id.to_string(),
            name: r.name.clone(),
            account: r.account().to_string(),
            tier: r.tier.to_string(),
            state: r.state.name().into(),
            created_at: r.created_at.to_rfc3339(),
            rotated_at: r.rotated_at.map(|t| t.to_rfc3339()),
            last_used_at: r.last_used_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// A new or rotated key: the plaintext appears here once and is never stored.
#[derive(Debug, Object)]
pub struct IssuedKeyView {
    /// The full key, `imag_<id>_<secret>`. Store it now: it cannot be shown again.
    pub key: String,
    /// The record.
    pub record: KeyView,
}

impl From<IssuedKey> for IssuedKeyView {
    fn from(k: IssuedKey) -> Self {
        IssuedKeyView { key: k.key.reveal(), record: KeyView::from(&k.record) }
    }
}

/// `POST /admin/keys`.
#[derive(Debug, Object)]
pub struct CreateKey {
    /// A label for humans (1-100 printable characters).
    pub name: Declared<KeyNameText>,
    /// A configured tier (`free`, `premium`, `enterprise` by default).
    pub tier: Declared<TierText>,
    /// Add the key to this account instead of a new one (null or absent: a new account).
    #[oai(nullable)]
    pub account: Option<Declared<AccountIdText>>,
}

/// `PUT /admin/keys/{id}/tier`.
#[derive(Debug, Object)]
pub struct SetTier {
    /// A configured tier.
    pub tier: Declared<TierText>,
}

/// Created.
#[derive(ApiResponse)]
pub enum Created {
    /// The key was created.
    #[oai(status = 201)]
    Created(Json<IssuedKeyView>),
}

/// The admin API.
pub struct AdminApi;

fn check(state: &AppState, token: &AdminToken) -> Result<(), ApiError> {
    let Some(expected) = state.settings.admin.token() else {
        return Err(ApiError::forbidden(
            "admin_disabled",
            "the admin API is disabled: set admin.token (TELLSCAN_ADMIN_TOKEN)",
        ));
    };
    // hashing first makes the comparison constant-time whatever the lengths
    let a = Sha256::digest(token.0.token.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("invalid_admin_token", "the admin token is not valid"))
    }
}

fn key_id(id: &Declared<KeyIdText>) -> Result<KeyId, ApiError> {
    KeyId::parse(id.as_str()).map_err(|e| ApiError::bad_request("invalid_key_id", e.to_string()))
}

/// A well-formed tier name (400 otherwise) that is configured (422 otherwise).
fn tier(state: &AppState, name: &Declared<TierText>) -> Result<Tier, ApiError> {
    Tier::parse(name.as_str()).map_err(|e| ApiError::bad_request("invalid_tier", e.to_string()))?;
    state
        .settings
        .quota
        .tier(name.as_str())
        .map_err(|e| ApiError::unprocessable("unknown_tier", e.to_string()))
}

fn failure(e: anyhow::Error) -> ApiError {
    if let Some(unknown) = e.downcast_ref::<UnknownKey>() {
        return ApiError::not_found("unknown_key", unknown.to_string());
    }
    if let Some(conflict) = e.downcast_ref::<KeyConflict>() {
        return ApiError::conflict("key_revoked", conflict.to_string());
    }
    if let Some(store) = e.downcast_ref::<crate::store::StoreError>() {
        return ApiError::unavailable("store_unavailable", store.to_string(), 5);
    }
    ApiError::bad_request("invalid_request", e.to_string())
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApi {
    /// List keys.
    #[oai(path = "/admin/keys", method = "get", operation_id = "list_keys")]
    async fn list(
        &self,
        token: AdminToken,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<Vec<KeyView>>, ApiError> {
        check(&state, &token)?;
        let keys = state.keys.list().await.map_err(|e| failure(e.into()))?;
        Ok(Json(keys.iter().map(KeyView::from).collect()))
    }

    /// Create a key; the answer holds the plaintext key, shown this once.
    #[oai(path = "/admin/keys", method = "post", operation_id = "create_key")]
    async fn create(
        &self,
        token: AdminToken,
        state: Data<&Arc<AppState>>,
        body: Json<CreateKey>,
    ) -> Result<Created, ApiError> {
        check(&state, &token)?;
        let tier = tier(&state, &body.tier)?;
        let account = body
            .account
            .as_ref()
            .map(|a| AccountId::parse(a.as_str()))
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_account", e.to_string()))?;
        let issued = state.keys.create_in(body.name.as_str(), tier, account).await.map_err(failure)?;
        tracing::info!(key_id = %issued.record.id, tier = %issued.record.tier, "key created");
        Ok(Created::Created(Json(issued.into())))
    }

    /// One key.
    #[oai(path = "/admin/keys/:id", method = "get", operation_id = "get_key")]
    async fn get(
        &self,
        token: AdminToken,
        state: Data<&Arc<AppState>>,
        id: Path<Declared<KeyIdText>>,
    ) -> Result<Json<KeyView>, ApiError> {
        check(&state, &token)?;
        let record = state.keys.get(&key_id(&id)?).await.map_err(failure)?;
        Ok(Json(KeyView::from(&record)))
    }

    /// Issue a new secret; the old one stops working at once on this replica.
    #[oai(path = "/admin/keys/:id/rotate", method = "post", operation_id = "rotate_key")]
    async fn rotate(
        &self,
        token: AdminToken,
        state: Data<&Arc<AppState>>,
        id: Path<Declared<KeyIdText>>,
    ) -> Result<Json<IssuedKeyView>, ApiError> {
        check(&state, &token)?;
        let issued = state.keys.rotate(&key_id(&id)?).await.map_err(failure)?;
        tracing::info!(key_id = %issued.record.id, "key rotated");
        Ok(Json(issued.into()))
    }

    /// Disable a key (reversible).
    #[oai(path = "/admin/keys/:id/disable", method = "post", operation_id = "disable_key")]
    async fn disable(
        &self,
        token: AdminToken,
        state: Data<&Arc<AppState>>,
        id: Path<Declared<KeyIdText>>,
    ) -> Result<Json<KeyView>, ApiError> {
        self.set_state(token, state, id, KeyState::Disabled).await
    }

    /// Enable a disabled key.
    #[oai(path = "/admin/keys/:id/enable", method = "post", operation_id = "enable_key")]
    async fn enable(
        &self,
        token: AdminToken,
        state: Data<&Arc<AppState>>,
        id: Path<Declared<KeyIdText>>,
    ) -> Result<Json<KeyView>, ApiError> {
        self.set_state(token, state, id, KeyState::Active).await
    }

    /// Revoke a key for good.
    #[oai(path = "/admin/keys/:id/revoke", method = "post", operation_id = "revoke_key")]
    async fn revoke(
        &self,
        token: AdminToken,
        state: Data<&Arc<AppState>>,
        id: Path<Declared<KeyIdText>>,
    ) -> Result<Json<KeyView>, ApiError> {
        self.set_state(token, state, id, KeyState::Revoked).await
    }

    /// Move a key to another tier.
    #[oai(path = "/admin/keys/:id/tier", method = "put", operation_id = "set_key_tier")]
    async fn set_tier(
        &self,
        token: AdminToken,
        state: Data<&Arc<AppState>>,
        id: Path<Declared<KeyIdText>>,
        body: Json<SetTier>,
    ) -> Result<Json<KeyView>, ApiError> {
        check(&state, &token)?;
        let tier = tier(&state, &body.tier)?;
        let record = state.keys.set_tier(&key_id(&id)?, tier).await.map_err(failure)?;
        tracing::info!(key_id = %record.id, tier = %record.tier, "key tier changed");
        Ok(Json(KeyView::from(&record)))
    }
}

impl AdminApi {
    async fn set_state(
        &self,
        token: AdminToken,
        state: Data<&Arc<AppState>>,
        id: Path<Declared<KeyIdText>>,
        to: KeyState,
    ) -> Result<Json<KeyView>, ApiError> {
        check(&state, &token)?;
        let record = state.keys.set_state(&key_id(&id)?, to).await.map_err(failure)?;
        tracing::info!(key_id = %record.id, state = to.name(), "key state changed");
        Ok(Json(KeyView::from(&record)))
    }
}
