//! The one HTTP client the service uses on a client's behalf (URL submissions, webhooks).
//!
//! Every connection passes the [`AddressPolicy`]: host names are resolved by our own resolver,
//! which refuses the whole name when any of its addresses is refused (so a name cannot mix a
//! public and a private address and let the connector pick); IP literals, which bypass
//! resolvers, are checked before the request and at every redirect; only `http` and `https`
//! are followed; proxies from the environment are ignored, since they would connect for us.
//! Downloads are bounded in size while they stream, and every request in time.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Once};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use super::address::{AddressPolicy, Refusal};

/// Why an outbound request did not happen or failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an absolute `http`/`https` URL.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The host is, or resolves to, an address the policy refuses.
    #[error("refused: {host} is a {} address ({addr})", .reason.name())]
    Refused {
        /// The host as written.
        host: String,
        /// The refused address.
        addr: IpAddr,
        /// Why.
        reason: Refusal,
    },
    /// The body is over the limit.
    #[error("the download is larger than {0} bytes")]
    TooLarge(u64),
    /// Did not finish in time.
    #[error("the request timed out")]
    Timeout,
    /// The server answered with a non-success status.
    #[error("the server answered HTTP {0}")]
    Status(u16),
    /// Anything else on the way (DNS failure, connection refused, TLS, too many redirects).
    #[error("{0}")]
    Network(String),
}

/// A downloaded body.
#[derive(Debug)]
pub struct Fetched {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The URL after redirects.
    pub final_url: Url,
}

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

/// The guarded client.
#[derive(Clone)]
pub struct OutboundClient {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl OutboundClient {
    /// A client that refuses what `policy` refuses and gives up after `timeout`.
    pub fn new(policy: AddressPolicy, timeout: Duration) -> anyhow::Result<OutboundClient> {
        install_crypto_provider();
        let policy = Arc::new(policy);
        let redirect_policy = Arc::clone(&policy);
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { policy: Arc::clone(&policy) }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error(FetchError::Network(format!("more than {MAX_REDIRECTS} redirects")))
                } else if let Err(e) = check_url(&redirect_policy, attempt.url()) {
                    attempt.error(e)
                } else {
                    attempt.follow()
                }
            }))
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("tellscan/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OutboundClient { client, policy })
    }

    /// Parse and check a URL without connecting.
    pub fn check(&self, url: &str) -> Result<Url, FetchError> {
        let url = Url::parse(url).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
        check_url(&self.policy, &url)?;
        Ok(url)
    }

    /// GET `url` and return at most `max_bytes` of body (more is an error, found while
    /// streaming, whatever `Content-Length` says).
    pub async fn fetch(&self, url: &str, max_bytes: u64) -> Result<Fetched, FetchError> {
        let url = self.check(url)?;
        let mut response = self.client.get(url).send().await.map_err(classify)?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(FetchError::TooLarge(max_bytes));
        }
        let final_url = response.url().clone();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(FetchError::TooLarge(max_bytes));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched { bytes, final_url })
    }

    /// POST a JSON `body` with extra `headers`; returns the status of the answer.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<u16, FetchError> {
        let url = self.check(url)?;
        let mut request = self.client.post(url).header("content-type", "application/json").body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(classify)?;
        Ok(response.status().as_u16())
    }
}

/// `http`/`https` only, with a host; an IP-literal host must pass the policy (names are
/// checked by the resolver when connecting).
pub fn check_url(policy: &AddressPolicy, url: &Url) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::InvalidUrl(format!("scheme '{}' is not http or https", url.scheme())));
    }
    let host = match url.host() {
        Some(h) => h,
        None => return Err(FetchError::InvalidUrl("the URL has no host".into())),
    };
    let literal = match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    };
    if let Some(addr) = literal {
        policy.check(addr).map_err(|reason| FetchError::Refused { host: host.to_string(), addr, reason })?;
    }
    Ok(())
}

/// Resolves names and refuses them when any address is refused.
struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} does not resolve").into());
            }
            for a in &addrs {
                if let Err(reason) = policy.check(a.ip()) {
                    let refused = FetchError::Refused { host: host.clone(), addr: a.ip(), reason };
                    return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Turn a reqwest error into ours, finding a refusal wherever it sits in the chain.
fn classify(e: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(FetchError::Refused { host, addr, reason }) = err.downcast_ref::<FetchError>() {
            return FetchError::Refused { host: host.clone(), addr: *addr, reason: *reason };
        }
        if let Some(FetchError::Network(m)) = err.downcast_ref::<FetchError>() {
            return FetchError::Network(m.clone());
        }
        source = err.source();
    }
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Network(e.to_string())
    }
}

/// rustls needs one process-wide crypto provider; ring is the one built in. Anything in
/// this process that builds a reqwest client (tests, benches) calls this first.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // another part of the process may have installed one already; either is fine
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_hosts_and_schemes_are_checked_before_connecting() {
        let policy = AddressPolicy::default();
        let check = |u: &str| check_url(&policy, &Url::parse(u).unwrap());
        assert!(matches!(
            check("http://127.0.0.1:8080/x"),
            Err(FetchError::Refused { reason: Refusal::Loopback, .. })
        ));
        assert!(matches!(check("http://[::1]/"), Err(FetchError::Refused { reason: Refusal::Loopback, .. })));
        assert!(matches!(
            check("http://[::ffff:10.0.0.1]/"),
            Err(FetchError::Refused { reason: Refusal::Private, .. })
        ));
        assert!(matches!(
            check("http://169.254.169.254/latest/meta-data/"),
            Err(FetchError::Refused { reason: Refusal::LinkLocal, .. })
        ));
        // decimal and hex spellings of loopback are normalised by the URL parser
        assert!(matches!(
            check("http://2130706433/"),
            Err(FetchError::Refused { reason: Refusal::Loopback, .. })
        ));
        assert!(matches!(
            check("http://0x7f.1/"),
            Err(FetchError::Refused { reason: Refusal::Loopback, .. })
        ));
        assert!(matches!(check("file:///etc/passwd"), Err(FetchError::InvalidUrl(_))));
        assert!(matches!(check("gopher://example.com/"), Err(FetchError::InvalidUrl(_))));
        assert!(check("https://example.com/a.jpg").is_ok());
        assert!(check("http://93.184.216.34/a.jpg").is_ok());
    }
}
