//! The `vidgate` command line: `serve` runs the gateway; `keys create` makes an
//! account in a local database; `admin ...` manages a running server over its
//! admin API; `generate`, `tasks`, `price` and `providers check` are clients of
//! a running server; `webhooks verify` checks a callback's signature. Parsing and
//! dispatch only; the work is in the library. An error is printed once, by
//! `main`; an interrupted command exits 130.

pub mod admin;
pub mod output;
pub mod providers;
pub mod remote;
mod serve;

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, Command as ClapCommand, FromArgMatches, Parser, Subcommand};

use crate::config::{Config, SETTINGS};

#[derive(Debug, Parser)]
#[command(name = "vidgate", version, about = "A self-hosted gateway for AI video generation.")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (zero configuration: SQLite and files under ./vidgate-data).
    Serve(serve::ServeArgs),
    /// Manage a running server over HTTP (VIDGATE_URL, VIDGATE_ADMIN_KEY):
    /// accounts, keys and their limits, top-up codes, usage, the audit log.
    Admin(admin::AdminArgs),
    /// Manage API keys in a local database.
    Keys {
        #[command(subcommand)]
        command: serve::KeysCommand,
    },
    /// Callback helpers.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Make a video on a server (VIDGATE_URL, VIDGATE_API_KEY) and save it.
    Generate(Box<remote::GenerateArgs>),
    /// List, show or cancel tasks on a server.
    Tasks {
        #[command(subcommand)]
        command: remote::TasksCommand,
    },
    /// Estimate a price offline from the catalog.
    Price(remote::PriceArgs),
    /// Upstream providers of a server (VIDGATE_URL, VIDGATE_ADMIN_KEY).
    Providers {
        #[command(subcommand)]
        command: providers::ProvidersCommand,
    },
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

/// A command that the user interrupted (Ctrl-C): printed plainly, exit 130.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

/// Every setting of `config::SETTINGS` as a flag (`--lease-secs 30`), plus
/// `--config FILE`; applied over the file and the environment.
#[derive(Debug, Default)]
pub struct SettingFlags {
    config: Option<PathBuf>,
    values: Vec<(&'static str, String)>,
}

impl SettingFlags {
    /// The configuration: defaults, then the file, then `VIDGATE_*`, then flags.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref(), |k| std::env::var(k).ok())?;
        config.apply_flags(&self.values)?;
        Ok(config)
    }
}

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Self { config: m.get_one::<PathBuf>("config").cloned(), values: Vec::new() };
        flags.update_from_arg_matches(m)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for s in SETTINGS {
            if s.is_switch() {
                if m.get_flag(s.name) {
                    self.values.push((s.name, "true".to_owned()));
                }
            } else if let Some(v) = m.get_one::<String>(s.name) {
                self.values.push((s.name, v.clone()));
            }
        }
        Ok(())
    }
}

impl Args for SettingFlags {
    fn augment_args(cmd: ClapCommand) -> ClapCommand {
        let cmd = cmd.arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML configuration file"),
        );
        SETTINGS.iter().fold(cmd, |cmd, s| {
            // Flag names live as long as the process; there are a few dozen.
            let long: &'static str = Box::leak(s.flag().into_boxed_str());
            let help = format!("{} [env: {}]", s.help.trim(), s.env_var());
            let arg = Arg::new(s.name).long(long).help(help);
            cmd.arg(if s.is_switch() { arg.action(ArgAction::SetTrue) } else { arg.value_name("VALUE") })
        })
    }

    fn augment_args_for_update(cmd: ClapCommand) -> ClapCommand {
        Self::augment_args(cmd)
    }
}

pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `serve` logs in the format its configuration names; the rest as text.
    if !matches!(cli.command, Command::Serve(_)) {
        crate::logging::init(crate::config::LogFormat::Text);
    }
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Admin(args) => admin::run(args).await,
        Command::Keys { command } => serve::keys(command).await,
        Command::Generate(args) => remote::generate(*args).await,
        Command::Tasks { command } => remote::tasks(command).await,
        Command::Price(args) => remote::price(&args),
        Command::Providers { command } => providers::run(command).await,
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
    }
}
