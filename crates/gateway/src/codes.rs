//! Top-up codes and sign-up: the operator makes a batch of codes (each worth a
//! value, usable a number of times, perhaps until an expiry); an account
//! redeems one for credits; with sign-up set to `code`, a valid code opens an
//! account. Codes are shown once and stored as SHA-256 hashes (79 random bits
//! each, so a fast hash is the right one). Sign-up attempts are counted per
//! client address in the database, so the limit holds across replicas.

use vidgate_api::credits::Credits;
use vidgate_api::error::ErrorCode;

use crate::accounts::{self, NewKey};
use crate::config::SignupMode;
use crate::error::ApiError;
use crate::ids::{AccountId, BatchId, KeyId};
use crate::state::AppState;
use crate::store::{Actor, CodeBatchRow, CodeRefusal, NewCode, Redeemed};
use crate::util;

/// Letters and digits people cannot mix up (no 0/O, 1/I/L, U).
const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Most codes in one batch.
pub const MAX_BATCH: i64 = 1000;
/// Most uses of one code.
pub const MAX_USES: i64 = 1_000_000;
/// Most credits one code adds per use (units).
pub const MAX_VALUE: i64 = 1_000_000_000 * Credits::UNITS_PER_CREDIT;
const HOUR_MS: i64 = 3_600_000;

/// A fresh code: `VG-XXXX-XXXX-XXXX-XXXX`.
fn generate() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let groups: Vec<String> =
        (0..4).map(|_| (0..4).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()).collect();
    format!("VG-{}", groups.join("-"))
}

/// A code as people may type it (any case, spaces or dashes anywhere) in the
/// one form that is hashed.
pub fn normalise(code: &str) -> String {
    code.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).collect()
}

fn hash(code: &str) -> String {
    util::sha256_hex(normalise(code).as_bytes())
}

/// A batch as the operator asks for it.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    pub value: Credits,
    pub count: i64,
    pub uses_per_code: i64,
    /// Epoch milliseconds.
    pub expires_at: Option<i64>,
    pub note: Option<String>,
}

/// Makes a batch of codes: the stored batch and the codes themselves (shown
/// only now).
pub async fn create_batch(
    state: &AppState,
    req: BatchRequest,
    actor: &Actor,
) -> Result<(CodeBatchRow, Vec<String>), ApiError> {
    if !(1..=MAX_VALUE).contains(&req.value.units()) {
        return Err(ApiError::invalid("value", "value must be more than 0 credits, at most 1000000000."));
    }
    if !(1..=MAX_BATCH).contains(&req.count) {
        return Err(ApiError::invalid("count", format!("count must be from 1 to {MAX_BATCH}.")));
    }
    if !(1..=MAX_USES).contains(&req.uses_per_code) {
        return Err(ApiError::invalid("uses_per_code", format!("uses_per_code must be from 1 to {MAX_USES}.")));
    }
    let now = util::now_ms();
    if req.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::invalid("expires_at", "expires_at must be in the future."));
    }
    if req.note.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::invalid("note", "The note must be at most 200 characters."));
    }
    let codes: Vec<String> = (0..req.count).map(|_| generate()).collect();
    let stored: Vec<NewCode> =
        codes.iter().map(|c| NewCode { hash: hash(c), prefix: c.chars().take(7).collect() }).collect();
    let batch = CodeBatchRow {
        id: BatchId::new(),
        value: req.value.units(),
        count: req.count,
        uses_per_code: req.uses_per_code,
        expires_at: req.expires_at,
        note: req.note,
        created_at: now,
        redeemed: 0,
    };
    state.store.create_code_batch(&batch, &stored, actor).await?;
    Ok((batch, codes))
}

fn refusal(r: CodeRefusal) -> ApiError {
    match r {
        CodeRefusal::Unknown => ApiError::new(ErrorCode::NotFound, "No such code.").with_param("code"),
        CodeRefusal::Expired => ApiError::new(ErrorCode::CodeExpired, "This code has expired.").with_param("code"),
        CodeRefusal::UsedUp => {
            ApiError::new(ErrorCode::CodeUsedUp, "This code has been used as many times as it may.").with_param("code")
        }
        CodeRefusal::AlreadyRedeemed => {
            ApiError::new(ErrorCode::CodeUsedUp, "This account has already redeemed this code.").with_param("code")
        }
    }
}

/// A code as people type it: letters, digits, spaces and dashes, at most 100
/// characters, at least one letter or digit (the API document's pattern).
fn checked_code(code: &str) -> Result<&str, ApiError> {
    let allowed = code.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
    if !allowed || normalise(code).is_empty() || code.len() > 100 {
        return Err(ApiError::invalid("code", "Give the code, as printed (VG-XXXX-XXXX-XXXX-XXXX)."));
    }
    Ok(code)
}

/// Redeems a code for the caller's account.
pub async fn redeem(
    state: &AppState,
    account_id: &AccountId,
    key_id: &KeyId,
    code: &str,
    source: &str,
) -> Result<Redeemed, ApiError> {
    let code = checked_code(code)?;
    match state.store.redeem_code(&hash(code), account_id, &Actor::key(key_id, source)).await? {
        Ok(r) => Ok(r),
        Err(r) => {
            tracing::info!(%key_id, refusal = ?r, "code redemption refused");
            Err(refusal(r))
        }
    }
}

/// A new account opened with a code.
#[derive(Debug)]
pub struct SignedUp {
    pub account_id: AccountId,
    pub key: NewKey,
    pub redeemed: Redeemed,
}

/// Opens an account with a code, when sign-up is open to codes and the client
/// address has not tried too often this hour (`subject` is what it is counted by).
pub async fn sign_up(
    state: &AppState,
    code: &str,
    name: Option<String>,
    subject: &str,
    source: &str,
) -> Result<SignedUp, ApiError> {
    if state.config.signup != SignupMode::Code {
        return Err(ApiError::new(ErrorCode::PermissionDenied, "Sign-up is closed; ask the operator for an account."));
    }
    let now = util::now_ms();
    let window = now - now.rem_euclid(HOUR_MS);
    let count = state.store.count_in_window("signup", subject, window, window - HOUR_MS).await?;
    let limit = state.config.signup_per_hour as i64;
    if count > limit {
        let retry_after = u64::try_from((window + HOUR_MS - now + 999) / 1000).unwrap_or(1);
        tracing::info!(client = subject, count, "sign-up refused: too many attempts from this address");
        return Err(ApiError::new(
            ErrorCode::RateLimitExceeded,
            format!("Too many sign-up attempts from this address: at most {limit} an hour. Retry in {retry_after} s."),
        )
        .with_retry_after(retry_after));
    }
    let code = checked_code(code)?;
    let name = accounts::checked_name("name", name, "signup")?;
    let account_id = AccountId::new();
    let key = accounts::first_key(&account_id);
    let actor = Actor { who: "signup".to_owned(), source: source.to_owned() };
    let credits = state.config.signup_credits.units();
    match state.store.sign_up_with_code(&hash(code), &account_id, &name, credits, &key.row, &actor).await? {
        Ok(redeemed) => Ok(SignedUp { account_id, key, redeemed }),
        Err(r) => {
            tracing::info!(client = subject, refusal = ?r, "sign-up refused: bad code");
            Err(refusal(r))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_the_same_however_they_are_typed() {
        let c = generate();
        assert_eq!(c.len(), 22);
        assert!(c.starts_with("VG-"));
        assert_eq!(hash(&c), hash(&c.to_lowercase().replace('-', " ")));
        assert_ne!(hash(&c), hash(&generate()));
        assert!(checked_code("  - ").is_err());
        assert!(checked_code("VG-ÄBCD").is_err(), "only what the document's pattern allows");
        assert!(checked_code(" vg abcd-efgh ").is_ok());
    }
}
