//! Service settings: `config/default.toml` (compiled in), an optional file, then `TELLSCAN_*`
//! environment variables, merged with figment and parsed into typed values once at start-up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::auth::key::Tier;
use crate::forensics::provenance::ProvenanceConfig;
use crate::forensics::weights::WeightsSource;
use crate::forensics::{DecodeLimits, DetectorConfig};
use crate::quota::TierLimits;

/// The defaults shipped with the binary (the same file as `config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Every setting of the service and of the key-management CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Listening, limits, pools.
    pub server: ServerSettings,
    /// Which quota store.
    pub store: StoreSettings,
    /// Key verification.
    pub keys: KeySettings,
    /// The admin API.
    pub admin: AdminSettings,
    /// Tiers and failure policy.
    pub quota: QuotaSettings,
    /// Asynchronous analyses.
    pub analyses: AnalysesSettings,
    /// Decoder limits and C2PA trust.
    pub detector: DetectorSettings,
}

/// `[analyses]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysesSettings {
    /// Analyses worked on at once by this replica.
    pub workers: usize,
    /// Seconds a claim hides an analysis from other workers.
    pub visibility_secs: u64,
    /// Seconds an analysed image is kept (0: dropped when the analysis finishes).
    pub keep_images_secs: u64,
    /// Seconds results are kept.
    pub keep_results_secs: u64,
    /// Seconds a URL download may take.
    pub url_timeout_secs: u64,
    /// Extra networks outbound requests may reach.
    pub allowed_networks: Vec<String>,
    /// Delivery attempts per webhook (the first included).
    pub webhook_attempts: u32,
    /// Milliseconds before the first retry of a webhook; each later retry waits twice as
    /// long as the one before, up to an hour.
    pub webhook_backoff_ms: u64,
    /// Seconds a webhook receiver has to answer.
    pub webhook_timeout_secs: u64,
    /// Webhooks this replica sends at once.
    pub webhook_senders: usize,
}

impl AnalysesSettings {
    /// The outbound address policy these settings describe.
    pub fn address_policy(&self) -> anyhow::Result<crate::outbound::address::AddressPolicy> {
        let networks = self
            .allowed_networks
            .iter()
            .map(|n| {
                n.parse()
                    .map_err(|e| anyhow::anyhow!("invalid configuration: analyses.allowed_networks: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(crate::outbound::address::AddressPolicy::allowing(networks))
    }
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Listening address.
    pub addr: SocketAddr,
    /// Directory of the embedded store.
    #[serde(deserialize_with = "lenient_string")]
    pub data_dir: PathBuf,
    /// Detection threads (0 = one per core).
    pub workers: usize,
    /// Detections that may wait for a thread.
    pub queue: usize,
    /// Largest accepted image in bytes.
    pub max_upload_bytes: u64,
    /// Request bodies (of keyed routes) held in memory at once, in bytes, counted by their
    /// declared length (or the largest allowed without one); beyond it, 503 before reading.
    pub upload_buffer_bytes: u64,
    /// Size of the result cache (0 disables it).
    pub result_cache_entries: usize,
    /// Seconds in-flight requests get at shutdown.
    pub shutdown_grace_secs: u64,
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Redis URL; empty selects the embedded store.
    #[serde(deserialize_with = "lenient_string")]
    pub redis_url: String,
    /// Redis pool size.
    pub redis_pool_size: usize,
    /// Redis operation timeout in milliseconds.
    pub redis_timeout_ms: u64,
}

impl StoreSettings {
    /// The Redis URL when one is configured.
    pub fn redis_url(&self) -> Option<&str> {
        Some(self.redis_url.trim()).filter(|u| !u.is_empty())
    }
}

/// `[keys]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// Seconds a verified key stays cached.
    pub cache_ttl_secs: u64,
    /// Wrong secrets one key id may cost in argon2 runs per window; 0 turns the bound off.
    pub wrong_secret_limit: u32,
    /// The length of that window in seconds.
    pub wrong_secret_window_secs: u64,
}

impl KeySettings {
    /// The bound on wrong-secret floods these settings ask for.
    pub fn flood_limit(&self) -> crate::auth::flood::FloodLimit {
        crate::auth::flood::FloodLimit {
            wrong_secrets: self.wrong_secret_limit,
            window: std::time::Duration::from_secs(self.wrong_secret_window_secs),
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token of the admin API; empty disables it.
    #[serde(deserialize_with = "lenient_string")]
    pub token: String,
}

impl AdminSettings {
    /// The token when the admin API is enabled.
    pub fn token(&self) -> Option<&str> {
        Some(self.token.as_str()).filter(|t| !t.is_empty())
    }
}

/// What to do when the quota store is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Keep serving with an in-process per-minute limit.
    Allow,
    /// Answer 503.
    Deny,
}

/// `[quota]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    /// Store-outage policy.
    pub on_store_error: OnStoreError,
    /// Limits per tier name.
    pub tiers: BTreeMap<Tier, TierLimits>,
}

impl QuotaSettings {
    /// The limits of a tier, when it is configured.
    pub fn limits(&self, tier: &Tier) -> Option<&TierLimits> {
        self.tiers.get(tier)
    }

    /// Parse a tier name and check that it is configured.
    pub fn tier(&self, name: &str) -> anyhow::Result<Tier> {
        let tier = Tier::parse(name)?;
        if !self.tiers.contains_key(&tier) {
            let known: Vec<&str> = self.tiers.keys().map(Tier::as_str).collect();
            anyhow::bail!("unknown tier '{tier}'; configured tiers: {}", known.join(", "));
        }
        Ok(tier)
    }
}

/// `[detector]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSettings {
    /// Largest width × height.
    pub max_pixels: u64,
    /// Largest width or height.
    pub max_side: u32,
    /// PEM file of C2PA trust anchors; empty for none.
    #[serde(deserialize_with = "lenient_string")]
    pub trust_anchors: String,
    /// The `ml` module's weights (safetensors, from `tellscan train`); empty for the copy built
    /// into the binary.
    pub weights: WeightsSource,
    /// The calibrated fusion (JSON, from `tellscan calibrate`); empty for the built-in copy.
    pub fusion: WeightsSource,
}

impl DetectorSettings {
    /// The detector configuration these settings describe.
    pub fn detector_config(&self) -> DetectorConfig {
        let anchors = Some(self.trust_anchors.trim()).filter(|p| !p.is_empty()).map(PathBuf::from);
        DetectorConfig {
            limits: DecodeLimits { max_pixels: self.max_pixels, max_side: self.max_side },
            provenance: ProvenanceConfig { trust_anchors_pem: anchors },
            ml_weights: Some(self.weights.clone()),
            fusion: Some(self.fusion.clone()),
        }
    }
}

/// Environment variables read as shortcuts for nested settings.
const ENV_SHORTCUTS: [(&str, &str); 6] = [
    ("TELLSCAN_ADDR", "server.addr"),
    ("TELLSCAN_DATA_DIR", "server.data_dir"),
    ("TELLSCAN_REDIS_URL", "store.redis_url"),
    ("REDIS_URL", "store.redis_url"),
    ("TELLSCAN_ADMIN_TOKEN", "admin.token"),
    ("TELLSCAN_C2PA_TRUST_ANCHORS", "detector.trust_anchors"),
];

impl Settings {
    /// Load the defaults, then `file` (when given), then the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        Self::load_with_env(file, std::env::vars())
    }

    /// [`Settings::load`] with the environment given explicitly (tests use this so they do
    /// not depend on, or change, the process environment).
    pub fn load_with_env(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                anyhow::bail!("configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        // nested settings first (TELLSCAN_SECTION__KEY), then the shortcuts, the generic
        // REDIS_URL losing to TELLSCAN_REDIS_URL
        for (name, value) in &vars {
            if let Some(path) = name.strip_prefix("TELLSCAN_").filter(|p| p.contains("__")) {
                let key = path.to_lowercase().replace("__", ".");
                figment = figment.merge((key, parse_env_value(value)));
            }
        }
        for (var, key) in ENV_SHORTCUTS.iter().rev() {
            if let Some(value) = vars.get(*var) {
                figment = figment.merge((*key, value.clone()));
            }
        }
        let settings: Settings =
            figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.quota.tiers.is_empty(), "invalid configuration: no quota tiers");
        anyhow::ensure!(
            self.server.max_upload_bytes > 0,
            "invalid configuration: server.max_upload_bytes is 0"
        );
        Ok(())
    }

    /// Detection threads after resolving 0 to the number of cores.
    pub fn workers(&self) -> usize {
        match self.server.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}

/// Environment values are text; numbers and booleans are read as such so `TELLSCAN_SERVER__QUEUE=8`
/// sets a number.
fn parse_env_value(value: &str) -> figment::value::Value {
    use figment::value::Value;
    if let Ok(n) = value.parse::<u64>() {
        return Value::from(n);
    }
    if let Ok(b) = value.parse::<bool>() {
        return Value::from(b);
    }
    Value::from(value.to_string())
}

/// Text settings that an environment variable may spell as a number (`TELLSCAN_ADMIN__TOKEN=1234`).
fn lenient_string<'de, D: serde::Deserializer<'de>, T: From<String>>(d: D) -> Result<T, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Str(String),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(T::from(match Text::deserialize(d)? {
        Text::Str(s) => s,
        Text::Unsigned(n) => n.to_string(),
        Text::Signed(n) => n.to_string(),
        Text::Float(n) => n.to_string(),
        Text::Bool(b) => b.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_the_design() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.server.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.store.redis_url(), None);
        let free = s.quota.limits(&Tier::parse("free").unwrap()).unwrap();
        assert_eq!(*free, TierLimits { per_minute: 10, daily: 50, monthly: 1000 });
        let ent = s.quota.limits(&Tier::parse("enterprise").unwrap()).unwrap();
        assert_eq!(*ent, TierLimits { per_minute: 100, daily: 10_000, monthly: 300_000 });
        assert_eq!(s.quota.on_store_error, OnStoreError::Allow);
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("TELLSCAN_REDIS_URL", "redis://127.0.0.1:7000/"),
                ("REDIS_URL", "redis://127.0.0.1:1/"),
                ("TELLSCAN_ADDR", "127.0.0.1:9999"),
                ("TELLSCAN_SERVER__QUEUE", "3"),
                ("TELLSCAN_ADMIN__TOKEN", "12345"),
                ("TELLSCAN_QUOTA__ON_STORE_ERROR", "deny"),
            ]),
        )
        .unwrap();
        assert_eq!(s.store.redis_url(), Some("redis://127.0.0.1:7000/"));
        assert_eq!(s.server.addr.port(), 9999);
        assert_eq!(s.server.queue, 3);
        assert_eq!(s.admin.token(), Some("12345"));
        assert_eq!(s.quota.on_store_error, OnStoreError::Deny);
        assert!(s.quota.tier("gold").is_err());
        assert!(s.quota.tier("premium").is_ok());
    }
}
