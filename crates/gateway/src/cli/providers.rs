//! `vidgate providers check`: asks a running server (VIDGATE_URL, with the admin
//! key in VIDGATE_ADMIN_KEY) to check every configured provider's credentials,
//! and prints one line per provider: its name, kind, status and the upstream's
//! message. Exits non-zero when any provider is not `ok`. It reads no database
//! and no credential of its own: the server makes the calls.

use clap::{Args, Subcommand};
use serde::Deserialize;

use super::output;
use crate::api_client::Client;

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Check each provider's credentials with a call that creates nothing billable.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Server address.
    #[arg(long, env = "VIDGATE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's admin key.
    #[arg(long, env = "VIDGATE_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
    /// Print the server's JSON answer instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct Line {
    provider: String,
    kind: String,
    status: String,
    message: String,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct Checks {
    data: Vec<Line>,
}

pub async fn run(command: ProvidersCommand) -> anyhow::Result<()> {
    let ProvidersCommand::Check(args) = command;
    let client = Client::new(&args.url, &args.admin_key)?;
    let checks: Checks = client.get_json("/admin/providers/check").await?;
    if args.json {
        output::line(&serde_json::to_string_pretty(&checks)?);
    } else {
        let width = checks.data.iter().map(|l| l.provider.len()).max().unwrap_or(0);
        for l in &checks.data {
            let message = if l.message.is_empty() { String::new() } else { format!("  {}", l.message) };
            output::line(&format!("{:<width$}  {:<9}  {}{message}", l.provider, l.kind, l.status));
        }
    }
    let failing: Vec<&str> = checks.data.iter().filter(|l| l.status != "ok").map(|l| l.provider.as_str()).collect();
    if failing.is_empty() { Ok(()) } else { anyhow::bail!("not ok: {}", failing.join(", ")) }
}
