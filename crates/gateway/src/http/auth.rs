//! Authentication extractors: `Caller` for `/v1` (an API key, looked up by its
//! SHA-256 and cached briefly) and `Admin` for `/admin` (the admin key).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tasks::Caller;
use crate::util;

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
            Some(k) if !k.revoked => Ok(Caller {
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
