//! The commands that work on this machine's data: `serve` (the gateway itself)
//! and `keys create` (an account and its key in an existing database).

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;
use vidgate_api::credits::Credits;

use super::{SettingFlags, output};
use crate::accounts;
use crate::config::Config;
use crate::startup::Application;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    settings: SettingFlags,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new account with credits in the database of the data folder (or of
    /// VIDGATE_DATABASE_URL) and print its API key as the last line. To manage a
    /// running server from elsewhere, use its admin API.
    Create {
        #[command(flatten)]
        settings: SettingFlags,
        /// Credits for the account (decimal, up to 4 places); the signup amount
        /// when absent.
        #[arg(long)]
        credits: Option<String>,
        /// A name for the account.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Create the database if there is none yet (otherwise a folder without
        /// one is refused: the running server would not know this key).
        #[arg(long)]
        init: bool,
    },
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.settings.load()?;
    crate::logging::init(config.log_format);
    if config.allow_private_urls {
        tracing::warn!("private URLs are allowed: user-given URLs may reach this machine's network");
    }
    if let Some(warning) = public_url_warning(&config) {
        tracing::warn!("{warning}");
    }
    let app = Application::build(config).await?;
    let public = app.state().public_url.clone();
    let boot = app.bootstrap().clone();
    if boot.api_key.is_some() || boot.admin_key.is_some() {
        output::line("vidgate is ready. Save these keys: they are shown only once.");
        if let Some(k) = &boot.admin_key {
            output::line(&format!("  admin key:   {}", k.expose()));
        }
        if let Some(k) = &boot.api_key {
            output::line(&format!("  API key:     {}", k.expose()));
        }
    }
    output::line(&format!("  playground:  {public}/"));
    output::line(&format!("  API:         {public}/v1   (OpenAPI: {public}/openapi.json)"));
    tracing::info!(address = %app.address(), "listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    app.run_until_stopped(shutdown).await
}

/// Listening on every interface (`0.0.0.0`, `::`) without `public_url` makes
/// links (results, uploads, signed files) read `http://0.0.0.0:PORT/...`, which
/// no client can open: say so at start.
pub fn public_url_warning(config: &Config) -> Option<String> {
    (config.listen.ip().is_unspecified() && config.public_url.is_none()).then(|| {
        format!(
            "listening on {} without a public URL: links handed to clients would read http://{}/...; set \
             --public-url (VIDGATE_PUBLIC_URL) to the address clients reach this server at",
            config.listen, config.listen
        )
    })
}

/// Opens the database a running server uses, refusing to make an empty one
/// unless `init` (a typo in `--data-dir` must not create a second database whose
/// keys the server rejects).
async fn open_existing(config: &Config, init: bool) -> anyhow::Result<Store> {
    if config.database_url.is_none() {
        let path = config.data_dir.join("vidgate.db");
        if !path.exists() && !init {
            anyhow::bail!(
                "there is no vidgate database at {}; point --data-dir (or VIDGATE_DATA_DIR, VIDGATE_DATABASE_URL) at \
                 the server's data, or pass --init to create a new one",
                path.display()
            );
        }
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let store = Store::connect(&config.effective_database_url()).await?;
    if !init && !store.is_initialised().await? {
        store.close().await;
        anyhow::bail!("the database has no vidgate schema; pass --init to create one");
    }
    store.migrate().await?;
    Ok(store)
}

pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { settings, credits, name, init } => {
            let config = settings.load()?;
            let credits = match credits {
                Some(c) => Credits::parse_decimal(c.trim()).filter(|c| c.units() >= 0).ok_or_else(|| {
                    anyhow::anyhow!("--credits must be a non-negative number with at most 4 decimals")
                })?,
                None => config.signup_credits,
            };
            let name = accounts::checked_name("name", Some(name), "cli").map_err(|e| anyhow::anyhow!(e.message))?;
            let store = open_existing(&config, init).await?;
            let (account_id, key) = accounts::create_account(&store, &name, credits.units()).await?;
            store.close().await;
            output::line(&format!("# account {account_id} with {credits} credits"));
            output::line(key.secret.expose());
            Ok(())
        }
    }
}

async fn signal_shutdown(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: draining requests and stopping workers");
    token.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_everywhere_without_a_public_url_is_warned_about() {
        let mut c = Config::default();
        assert_eq!(public_url_warning(&c), None, "the default listens on loopback");
        for listen in ["0.0.0.0:8080", "[::]:8080"] {
            c.listen = listen.parse().unwrap_or(c.listen);
            let warning = public_url_warning(&c).unwrap_or_default();
            assert!(warning.contains("--public-url") && warning.contains(listen), "{warning}");
        }
        c.public_url = Some("https://videos.example.com".to_owned());
        assert_eq!(public_url_warning(&c), None);
    }
}
