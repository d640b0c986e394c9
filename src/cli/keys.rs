//! `tellscan keys …`: key management against the configured store, the same operations as
//! the admin API. With the embedded store, a running server holds the file; the command then
//! says so and shows the admin-API call to use instead.

use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;

use super::serve::runtime;
use crate::auth::key::{AccountId, KeyId, KeyRecord, KeyState};
use crate::auth::KeyService;
use crate::http::open_stores;
use crate::store::StoreError;

/// Key-management subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; the key itself is printed once, alone on the last line.
    Create {
        /// A configured tier: free, premium, enterprise (by default).
        #[arg(long)]
        tier: String,
        /// A label for humans.
        #[arg(long)]
        name: String,
        /// Add the key to this existing account (16 hex digits) instead of a new one.
        #[arg(long)]
        account: Option<String>,
    },
    /// List keys (never secrets).
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Issue a new secret for a key; the old one stops working.
    Rotate {
        /// Key id.
        id: String,
    },
    /// Disable a key (reversible).
    Disable {
        /// Key id.
        id: String,
    },
    /// Enable a disabled key.
    Enable {
        /// Key id.
        id: String,
    },
    /// Revoke a key for good.
    Revoke {
        /// Key id.
        id: String,
    },
    /// Move a key to another tier.
    SetTier {
        /// Key id.
        id: String,
        /// A configured tier.
        tier: String,
    },
}

/// Run one key command.
pub fn run(
    settings: &crate::config::Settings,
    command: &KeysCommand,
) -> anyhow::Result<std::process::ExitCode> {
    runtime()?.block_on(async move {
        let store = open_stores(settings).map_err(|e| explain_locked(e, settings))?.store;
        let keys = KeyService::new(Arc::clone(&store), Duration::ZERO);
        match command {
            KeysCommand::Create { tier, name, account } => {
                let tier = settings.quota.tier(tier)?;
                let account = account.as_deref().map(AccountId::parse).transpose()?;
                let issued = keys.create_in(name, tier, account).await?;
                print_record(&issued.record);
                println!("store this key now; it cannot be shown again:");
                println!("{}", issued.key.reveal());
            }
            KeysCommand::List { json } => {
                let records = keys.list().await?;
                if *json {
                    for r in &records {
                        println!("{}", serde_json::to_string(&public_view(r))?);
                    }
                } else {
                    println!("{:<16}  {:<10}  {:<8}  {:<25}  name", "id", "tier", "state", "last used");
                    for r in &records {
                        let used = r.last_used_at.map_or("never".to_string(), |t| t.to_rfc3339());
                        println!(
                            "{:<16}  {:<10}  {:<8}  {:<25}  {}",
                            r.id,
                            r.tier.as_str(),
                            r.state.name(),
                            used,
                            r.name
                        );
                    }
                }
            }
            KeysCommand::Rotate { id } => {
                let issued = keys.rotate(&KeyId::parse(id)?).await?;
                print_record(&issued.record);
                println!("the old secret no longer works; store this key now:");
                println!("{}", issued.key.reveal());
            }
            KeysCommand::Disable { id } => {
                print_record(&keys.set_state(&KeyId::parse(id)?, KeyState::Disabled).await?)
            }
            KeysCommand::Enable { id } => {
                print_record(&keys.set_state(&KeyId::parse(id)?, KeyState::Active).await?)
            }
            KeysCommand::Revoke { id } => {
                print_record(&keys.set_state(&KeyId::parse(id)?, KeyState::Revoked).await?)
            }
            KeysCommand::SetTier { id, tier } => {
                let tier = settings.quota.tier(tier)?;
                print_record(&keys.set_tier(&KeyId::parse(id)?, tier).await?)
            }
        }
        store.flush().await?;
        Ok(std::process::ExitCode::SUCCESS)
    })
}

fn public_view(r: &KeyRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "name": r.name, "account": r.account(), "tier": r.tier, "state": r.state,
        "created_at": r.created_at, "rotated_at": r.rotated_at, "last_used_at": r.last_used_at,
    })
}

fn print_record(r: &KeyRecord) {
    println!(
        "id: {}  account: {}  tier: {}  state: {}  name: {}",
        r.id,
        r.account(),
        r.tier,
        r.state.name(),
        r.name
    );
}

fn explain_locked(e: anyhow::Error, settings: &crate::config::Settings) -> anyhow::Error {
    match e.downcast_ref::<StoreError>() {
        Some(StoreError::Locked(why)) => anyhow::anyhow!(
            "{why}.\nA running server owns the embedded store; manage keys through its admin API instead \
             (set admin.token / TELLSCAN_ADMIN_TOKEN when starting it), for example:\n  \
             curl -X POST http://{}/admin/keys -H \"Authorization: Bearer $TELLSCAN_ADMIN_TOKEN\" \
             -H 'content-type: application/json' -d '{{\"name\":\"my app\",\"tier\":\"free\"}}'\n\
             or stop the server and run this command again.",
            settings.server.addr
        ),
        _ => e,
    }
}
