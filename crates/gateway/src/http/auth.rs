//! Authentication extractors: `Caller` for `/v1` (an API key, looked up by its
//! SHA-256 and cached briefly in `KeyCache`; a revoked key, or one of a disabled
//! account, is refused), `Admin` for `/admin` (the admin key), and `ClientAddr`,
//! the client's address as the TCP peer or, behind a trusted proxy, as that
//! proxy saw it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::AuthKey;
use crate::tasks::Caller;
use crate::util::{self, FastMap};

/// Authentication is on every request's path: keys are looked up by hash and kept
/// for a few seconds. A revocation through this process takes effect at once;
/// through another replica, within the TTL.
pub struct KeyCache {
    ttl: Duration,
    /// By the SHA-256 of the key; a hit needs no hex and no database.
    /// Shared with each request's `Caller`: a hit copies no field of the key.
    entries: RwLock<FastMap<Digest256, Cached>>,
}

type Digest256 = [u8; 32];

/// A key (or the knowledge that there is none) and when it was read.
type Cached = (Option<Arc<AuthKey>>, Instant);

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: RwLock::new(FastMap::default()) }
    }

    /// `Some(entry)` when cached and fresh (the entry itself may be "no such key").
    fn get(&self, digest: &Digest256) -> Option<Option<Arc<AuthKey>>> {
        let entries = self.entries.read().ok()?;
        let (key, at) = entries.get(digest)?;
        (at.elapsed() < self.ttl).then(|| key.clone())
    }

    fn put(&self, digest: Digest256, key: Option<Arc<AuthKey>>) {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() > 100_000 {
                entries.clear();
            }
            entries.insert(digest, (key, Instant::now()));
        }
    }

    /// Forgets every key: a key's limits or its revocation take effect at once here.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        let digest = util::sha256(token.as_bytes());
        let key = match state.keys.get(&digest) {
            Some(k) => k,
            None => {
                let k = state.store.find_key(&util::hex(&digest)).await?.map(Arc::new);
                state.keys.put(digest, k.clone());
                k
            }
        };
        match key {
            Some(k) if k.revoked_at.is_none() && k.disabled_at.is_some() => {
                tracing::info!(key_id = %k.key_id, "request refused: the key's account is disabled");
                Err(ApiError::new(
                    vidgate_api::error::ErrorCode::Unauthorized,
                    "This API key's account is disabled; ask the operator.",
                ))
            }
            Some(k) if !k.revoked() => Ok(Caller::new(k)),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// Proof that the request carries the admin key.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        let hash = util::sha256_hex(token.as_bytes());
        if util::ct_eq(hash.as_bytes(), state.admin_key_hash.as_bytes()) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy
/// (`trusted_proxies`); then the right-most `X-Forwarded-For` entry that is
/// not one (entries further left are whatever the client chose to send).
/// "unknown" when the server runs without peer addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    /// The text shown in the audit log.
    pub fn text(&self) -> String {
        self.0.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }

    /// What rate limits count by: the address, or for IPv6 its /64 (one
    /// subscriber commonly holds a whole /64).
    pub fn subject(&self) -> String {
        match self.0 {
            None => "unknown".to_owned(),
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

/// An IPv4 address in IPv6 clothing (`::ffff:1.2.3.4`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port.
fn forwarded_entry(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>().ok().or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip())).map(canonical)
}

/// The client behind `peer` given the forwarded chain and the trusted proxies.
pub fn client_address(peer: Option<IpAddr>, forwarded: &[&str], trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = peer.map(canonical)?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let chain: Vec<&str> = forwarded.iter().flat_map(|h| h.split(',')).collect();
    let mut leftmost = None;
    for entry in chain.iter().rev() {
        match forwarded_entry(entry) {
            Some(ip) if is_trusted(&ip) => leftmost = Some(ip),
            Some(ip) => return Some(ip),
            // Garbage where a trusted proxy should have written an address: the
            // proxy is all we know.
            None => return Some(peer),
        }
    }
    Some(leftmost.unwrap_or(peer))
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = crate::server::peer().map(|p| p.ip());
        let forwarded: Vec<&str> =
            parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        Ok(ClientAddr(client_address(peer, &forwarded, &state.config.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_peer_is_the_client_unless_it_is_a_trusted_proxy() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        // An untrusted peer's forwarded header is ignored.
        assert_eq!(client_address(Some(ip("203.0.113.9")), &["1.2.3.4"], &trusted), Some(ip("203.0.113.9")));
        // Behind one trusted proxy: the right-most entry.
        assert_eq!(
            client_address(Some(ip("10.0.0.2")), &["6.6.6.6, 198.51.100.7"], &trusted),
            Some(ip("198.51.100.7"))
        );
        // Behind two: skip the trusted ones, never believe the client's own entries.
        assert_eq!(
            client_address(Some(ip("10.0.0.2")), &["6.6.6.6", "198.51.100.7, 10.1.1.1"], &trusted),
            Some(ip("198.51.100.7"))
        );
        // No header: the proxy itself.
        assert_eq!(client_address(Some(ip("10.0.0.2")), &[], &trusted), Some(ip("10.0.0.2")));
        // Mapped IPv4 counts as IPv4; a port is allowed.
        assert_eq!(
            client_address(Some(ip("::ffff:10.0.0.3")), &["[2001:db8::1]:443"], &trusted),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(client_address(Some(ip("::1")), &["junk"], &trusted), Some(ip("::1")));
        assert_eq!(client_address(None, &["1.2.3.4"], &trusted), None);
        // Nothing trusted by default.
        assert_eq!(client_address(Some(ip("10.0.0.2")), &["1.2.3.4"], &[]), Some(ip("10.0.0.2")));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(ClientAddr(Some(ip("2001:db8:1:2:3:4:5:6"))).subject(), "2001:db8:1:2::/64");
        assert_eq!(ClientAddr(Some(ip("192.0.2.1"))).subject(), "192.0.2.1");
        assert_eq!(ClientAddr(None).text(), "unknown");
    }
}
