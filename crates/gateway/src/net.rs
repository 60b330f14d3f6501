//! The guarded outbound HTTP client: the only way out to an address a user gave
//! (image URLs, callbacks, upstream result links). It refuses loopback, private,
//! link-local, CGNAT, multicast and other reserved addresses, both as literals in
//! the URL (any notation the URL parser accepts) and as the result of DNS, checked
//! on the very addresses the connection uses, so DNS rebinding cannot slip past;
//! it uses no proxy, follows no redirect, and caps time and size.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use vidgate_api::addr::is_forbidden_ip;

/// Why an outbound request to a user-given address did not happen or failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the URL is not valid")]
    InvalidUrl,
    #[error("only https:// URLs are allowed")]
    Scheme,
    #[error("the address is not allowed (loopback, private or reserved)")]
    Forbidden,
    #[error("the server answered with a redirect, which is not followed")]
    Redirect,
    #[error("the server answered with HTTP status {0}")]
    Status(u16),
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request timed out")]
    Timeout,
    #[error("the host could not be reached")]
    Network,
}

/// Resolves names with the system resolver, then refuses the lookup if any
/// address is forbidden: the connector only ever sees addresses we checked.
/// `hosts` pins names to addresses (like curl's --resolve), ahead of DNS.
#[derive(Debug, Default)]
struct GuardedResolver {
    hosts: HashMap<String, Vec<IpAddr>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let pinned = self.hosts.get(name.as_str()).cloned();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = match pinned {
                Some(ips) => ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            if addrs.is_empty() {
                return Err("no address".into());
            }
            if addrs.iter().any(|a| is_forbidden_ip(a.ip())) {
                return Err(Box::new(ForbiddenAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[derive(Debug)]
struct ForbiddenAddress;

impl std::fmt::Display for ForbiddenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("resolved to a forbidden address")
    }
}

impl std::error::Error for ForbiddenAddress {}

/// Cheap to clone; one per process.
#[derive(Clone, Debug)]
pub struct GuardedClient {
    client: reqwest::Client,
    allow_private: bool,
}

impl GuardedClient {
    /// With `allow_private`, loopback/private addresses and `http://` are allowed
    /// (development and tests); redirects are still never followed.
    pub fn new(allow_private: bool, timeout: Duration) -> Result<Self, reqwest::Error> {
        Self::with_hosts(allow_private, timeout, HashMap::new())
    }

    /// As `new`, with names pinned to addresses ahead of DNS; the pinned addresses
    /// pass the same checks as resolved ones.
    pub fn with_hosts(
        allow_private: bool,
        timeout: Duration,
        hosts: HashMap<String, Vec<IpAddr>>,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .user_agent(concat!("vidgate/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver { hosts }));
        }
        Ok(Self { client: builder.build()?, allow_private })
    }

    /// Checks scheme, host, credentials and literal address without any network
    /// access: the same rule as the create request's (`addr::check_user_url`).
    pub fn check_url(&self, raw: &str) -> Result<reqwest::Url, FetchError> {
        use vidgate_api::addr::{UrlError, check_user_url};
        let url = check_user_url(raw, self.allow_private).map_err(|e| match e {
            UrlError::Scheme => FetchError::Scheme,
            UrlError::Forbidden => FetchError::Forbidden,
            UrlError::Invalid | UrlError::NoHost | UrlError::Credentials => FetchError::InvalidUrl,
        })?;
        reqwest::Url::parse(url.as_str()).map_err(|_| FetchError::InvalidUrl)
    }

    /// Downloads a user-given URL into `out` (streamed: never whole in memory),
    /// refusing more than `max_bytes`, within `total` for the whole download;
    /// answers the size written.
    pub async fn fetch_to(
        &self,
        raw: &str,
        max_bytes: u64,
        total: Duration,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, FetchError> {
        use tokio::io::AsyncWriteExt;
        let url = self.check_url(raw)?;
        let work = async {
            let resp = self.client.get(url).timeout(total).send().await.map_err(map_send_error)?;
            let status = resp.status();
            if status.is_redirection() {
                return Err(FetchError::Redirect);
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            if resp.content_length().is_some_and(|n| n > max_bytes) {
                return Err(FetchError::TooLarge(usize::try_from(max_bytes).unwrap_or(usize::MAX)));
            }
            let mut written = 0u64;
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(map_send_error)?;
                written += chunk.len() as u64;
                if written > max_bytes {
                    return Err(FetchError::TooLarge(usize::try_from(max_bytes).unwrap_or(usize::MAX)));
                }
                out.write_all(&chunk).await.map_err(|_| FetchError::Network)?;
            }
            out.flush().await.map_err(|_| FetchError::Network)?;
            Ok(written)
        };
        tokio::time::timeout(total, work).await.map_err(|_| FetchError::Timeout)?
    }

    /// Checks the URL and that its host resolves to public addresses only (for
    /// callbacks given at create; delivery checks again at connect time).
    pub async fn check_resolves_public(&self, raw: &str) -> Result<(), FetchError> {
        let url = self.check_url(raw)?;
        if self.allow_private || vidgate_api::addr::url_literal_ip(&url).is_some() {
            return Ok(());
        }
        let host = url.host_str().ok_or(FetchError::InvalidUrl)?;
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host((host, port)).await.map_err(|_| FetchError::Network)?.collect();
        if addrs.is_empty() {
            return Err(FetchError::Network);
        }
        if addrs.iter().any(|a| is_forbidden_ip(a.ip())) {
            return Err(FetchError::Forbidden);
        }
        Ok(())
    }

    /// GETs a user-given URL and returns at most `max_bytes` of body.
    pub async fn fetch(&self, raw: &str, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
        let url = self.check_url(raw)?;
        let resp = self.client.get(url).send().await.map_err(map_send_error)?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect);
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
            return Err(FetchError::TooLarge(max_bytes));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(map_send_error)?;
            if body.len() + chunk.len() > max_bytes {
                return Err(FetchError::TooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The underlying client, already guarded, for callers that POST (webhooks).
    /// Callers must still pass the URL through [`GuardedClient::check_url`].
    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }
}

/// Maps a reqwest failure to our error without leaking internals.
pub fn map_send_error(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.is::<ForbiddenAddress>() {
            return FetchError::Forbidden;
        }
        source = s.source();
    }
    FetchError::Network
}
