//! The `vidgate` command line: `serve` runs the gateway; `keys create` makes an
//! account and prints its key. Parsing and dispatch only; the work is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, credits_to_units};
use crate::startup::{Application, open_store};
use crate::{accounts, output};

#[derive(Debug, Parser)]
#[command(name = "vidgate", version, about = "A self-hosted gateway for AI video generation.")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (zero configuration: SQLite and files under ./vidgate-data).
    Serve(ServeArgs),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Callback helpers.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Make a video on a server (VIDGATE_URL, VIDGATE_API_KEY) and save it.
    Generate(crate::cli_client::GenerateArgs),
    /// List, show or cancel tasks on a server.
    Tasks {
        #[command(subcommand)]
        command: crate::cli_client::TasksCommand,
    },
    /// Estimate a price offline from the catalog.
    Price(crate::cli_client::PriceArgs),
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Check a callback's signature (Standard Webhooks): exits 0 and prints "valid"
    /// when one of the `v1,` signatures matches, 1 otherwise.
    Verify {
        /// The account's secret, `whsec_...` (or set VIDGATE_WEBHOOK_SECRET).
        #[arg(long, env = "VIDGATE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// The `webhook-id` header.
        #[arg(long)]
        id: String,
        /// The `webhook-timestamp` header.
        #[arg(long)]
        timestamp: i64,
        /// The `webhook-signature` header.
        #[arg(long)]
        signature: String,
        /// File holding the raw body ("-" for standard input).
        #[arg(long)]
        body: PathBuf,
        /// Largest accepted age of the timestamp, in seconds.
        #[arg(long, default_value_t = 300)]
        tolerance: i64,
    },
}

/// Settings shared by every command that opens the data.
#[derive(Debug, Args)]
struct CommonArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data folder (VIDGATE_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on (VIDGATE_LISTEN), default 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Let user-given URLs reach loopback/private addresses and use http://
    /// (VIDGATE_ALLOW_PRIVATE_URLS). For development and tests only.
    #[arg(long)]
    allow_private_urls: bool,
    /// Number of task workers (VIDGATE_WORKERS); 0 pauses task execution.
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new account with credits and print its API key as the last line.
    Create {
        #[command(flatten)]
        common: CommonArgs,
        /// Credits for the account (decimal); the signup amount when absent.
        #[arg(long)]
        credits: Option<f64>,
        /// A name for the account.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

fn load_config(common: &CommonArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(common.config.as_deref(), |k| std::env::var(k).ok())?;
    if let Some(dir) = &common.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Generate(args) => crate::cli_client::generate(args).await,
        Command::Tasks { command } => crate::cli_client::tasks(command).await,
        Command::Price(args) => crate::cli_client::price(&args),
        Command::Webhooks {
            command: WebhooksCommand::Verify { secret, id, timestamp, signature, body, tolerance },
        } => {
            let body = if body.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                s
            } else {
                std::fs::read_to_string(&body)?
            };
            let now = crate::util::now_ms() / 1000;
            if (now - timestamp).abs() > tolerance {
                anyhow::bail!("the timestamp is {} s away from now (tolerance {tolerance} s)", (now - timestamp).abs());
            }
            let expected = crate::webhooks::sign(&secret, &id, timestamp, &body)
                .ok_or_else(|| anyhow::anyhow!("the secret is not a valid whsec_ secret"))?;
            let matches = signature.split(' ').any(|s| crate::util::ct_eq(s.as_bytes(), expected.as_bytes()));
            if !matches {
                anyhow::bail!("the signature does not match");
            }
            output::line("valid");
            Ok(())
        }
        Command::Keys { command: KeysCommand::Create { common, credits, name } } => {
            let config = load_config(&common)?;
            let store = open_store(&config).await?;
            let units = match credits {
                Some(c) if c.is_finite() && c >= 0.0 => credits_to_units(c),
                Some(_) => anyhow::bail!("--credits must be a non-negative number"),
                None => config.signup_credits,
            };
            let (account_id, key) = accounts::create_account(&store, &name, units).await?;
            store.close().await;
            output::line(&format!("# account {account_id} with {} credits", units as f64 / 10_000.0));
            output::line(&key.secret);
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = load_config(&args.common)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.allow_private_urls {
        config.allow_private_urls = true;
    }
    if let Some(w) = args.workers {
        config.workers = w;
    }
    if config.allow_private_urls {
        tracing::warn!("private URLs are allowed: user-given URLs may reach this machine's network");
    }
    let app = Application::build(config).await?;
    let public = app.state().public_url.clone();
    let boot = app.bootstrap().clone();
    if boot.api_key.is_some() || boot.admin_key.is_some() {
        output::line("vidgate is ready. Save these keys: they are shown only once.");
        if let Some(k) = &boot.admin_key {
            output::line(&format!("  admin key:   {k}"));
        }
        if let Some(k) = &boot.api_key {
            output::line(&format!("  API key:     {k}"));
        }
    }
    output::line(&format!("  playground:  {public}/"));
    output::line(&format!("  API:         {public}/v1   (OpenAPI: {public}/openapi.json)"));
    tracing::info!(address = %app.address(), "listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    app.run_until_stopped(shutdown).await
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
