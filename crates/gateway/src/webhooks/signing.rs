//! Standard Webhooks signing: each account has a `whsec_` secret (made on first
//! use); a delivery is signed `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`;
//! after a rotation the previous secret also signs for an overlap.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::ids::AccountId;
use crate::state::AppState;
use crate::store::{StoreError, WebhookSecrets};
use crate::util;

/// A new `whsec_` secret: 32 random bytes, base64.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the secret's key bytes.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok()?;
    let mac = util::hmac_sha256(&key, format!("{msg_id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", STANDARD.encode(mac)))
}

/// The `webhook-signature` value: the current secret's signature, followed during
/// the overlap after a rotation by the previous secret's (space-separated).
pub fn signature_header(
    secrets: &WebhookSecrets,
    now_ms: i64,
    msg_id: &str,
    timestamp: i64,
    body: &str,
) -> Option<String> {
    let mut sigs = vec![sign(secrets.current.as_deref()?, msg_id, timestamp, body)?];
    if let (Some(prev), Some(until)) = (&secrets.previous, secrets.previous_until)
        && until > now_ms
    {
        sigs.extend(sign(prev, msg_id, timestamp, body));
    }
    Some(sigs.join(" "))
}

/// The account's current secret, made on first use.
pub async fn current_secret(state: &AppState, account_id: &AccountId) -> Result<String, StoreError> {
    if let Some(s) = state.store.webhook_secrets(account_id).await?.current {
        return Ok(s);
    }
    state
        .store
        .init_webhook_secret(account_id, &new_secret())
        .await?
        .ok_or_else(|| StoreError::Corrupt("account without webhook secret".to_owned()))
}

/// Replaces the account's secret; the old one keeps signing for the overlap.
pub async fn rotate_secret(state: &AppState, account_id: &AccountId) -> Result<String, StoreError> {
    current_secret(state, account_id).await?;
    let secret = new_secret();
    let until = util::now_ms() + state.config.webhook_secret_overlap_secs.as_millis() as i64;
    state.store.rotate_webhook_secret(account_id, &secret, until).await?;
    Ok(secret)
}
