//! What a database needs before the first request: the link-signing secret, the
//! admin key's hash and the first account. Each is made once per database, even
//! when several replicas start together (the `meta` row decides who makes it);
//! what was made now is returned, to be shown once.

use crate::accounts;
use crate::config::Config;
use crate::secret::Secret;
use crate::store::Store;
use crate::util;

/// What a first start made and must be shown once.
#[derive(Debug, Default, Clone)]
pub struct Bootstrap {
    /// The first account's API key (only on the very first start).
    pub api_key: Option<Secret>,
    /// The generated admin key (only when it was generated now).
    pub admin_key: Option<Secret>,
}

/// The secrets every replica of one database shares.
pub struct Shared {
    pub link_secret: Secret,
    pub admin_key_hash: String,
}

pub async fn run(store: &Store, config: &Config) -> anyhow::Result<(Shared, Bootstrap)> {
    let mut made = Bootstrap::default();
    let link_secret = Secret::new(store.meta_get_or_insert("link_secret", &util::random_alnum(48)).await?);
    let admin_key_hash = match &config.admin_key {
        Some(key) => util::sha256_hex(key.expose().as_bytes()),
        None => match store.meta_get("admin_key_hash").await? {
            Some(h) => h,
            None => {
                let key = format!("sk-admin-{}", util::random_alnum(32));
                let candidate = util::sha256_hex(key.as_bytes());
                let hash = store.meta_get_or_insert("admin_key_hash", &candidate).await?;
                if hash == candidate {
                    made.admin_key = Some(Secret::new(key));
                }
                hash
            }
        },
    };
    if store.meta_get("bootstrapped").await?.is_none() {
        let marker = util::random_alnum(16);
        if store.meta_get_or_insert("bootstrapped", &marker).await? == marker {
            let (_, key) = accounts::create_account(store, "default", config.signup_credits.units()).await?;
            made.api_key = Some(key.secret);
        }
    }
    Ok((Shared { link_secret, admin_key_hash }, made))
}
