//! Authentication extractors: `Caller` for `/v1` (an API key, looked up by its
//! SHA-256 and cached briefly in `KeyCache`) and `Admin` for `/admin` (the admin
//! key).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::AuthKey;
use crate::tasks::Caller;
use crate::util;

/// Authentication is on every request's path: keys are looked up by hash and kept
/// for a few seconds. A revocation through this process takes effect at once;
/// through another replica, within the TTL.
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Option<AuthKey>, Instant)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// `Some(entry)` when cached and fresh (the entry itself may be "no such key").
    fn get(&self, hash: &str) -> Option<Option<AuthKey>> {
        let entries = self.entries.lock().ok()?;
        let (key, at) = entries.get(hash)?;
        (at.elapsed() < self.ttl).then(|| key.clone())
    }

    fn put(&self, hash: String, key: Option<AuthKey>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 100_000 {
                entries.clear();
            }
            entries.insert(hash, (key, Instant::now()));
        }
    }

    /// Forgets every key: a key's limits or its revocation take effect at once here.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
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
        let hash = util::sha256_hex(token.as_bytes());
        let key = match state.keys.get(&hash) {
            Some(k) => k,
            None => {
                let k = state.store.find_key(&hash).await?;
                state.keys.put(hash, k.clone());
                k
            }
        };
        match key {
            Some(k) if !k.revoked() => Ok(Caller {
                key_id: k.key_id,
                account_id: k.account_id,
                allowed_models: k.allowed_models,
                user_group: k.user_group,
            }),
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
