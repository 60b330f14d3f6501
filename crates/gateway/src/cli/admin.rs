//! `vidgate admin accounts|keys|codes|usage|audit ...`: the operator's commands,
//! spoken over HTTP to a running server (VIDGATE_URL, VIDGATE_ADMIN_KEY) through
//! its admin API, so no command ever opens a database of its own: what they
//! change is what the server (and its audit log) sees. Money is passed on as
//! the decimal text given, which the server reads exactly.

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::output;
use crate::api_client::ClientError;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Server address.
    #[arg(long, env = "VIDGATE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// The server's admin key.
    #[arg(long, env = "VIDGATE_ADMIN_KEY", hide_env_values = true, global = true)]
    admin_key: Option<String>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Accounts: list, create, show, grant, disable, enable.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// API keys and their limits.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Top-up codes.
    Codes {
        #[command(subcommand)]
        command: CodesCommand,
    },
    /// Credits charged, tasks and seconds of video, grouped.
    Usage {
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// Start (YYYY-MM-DD, UTC, or Unix seconds); 30 days before --to by default.
        #[arg(long)]
        from: Option<String>,
        /// End, exclusive; now by default.
        #[arg(long)]
        to: Option<String>,
        /// day, key, model or account.
        #[arg(long, default_value = "day")]
        group_by: String,
        /// Print CSV.
        #[arg(long)]
        csv: bool,
    },
    /// The audit log, newest first.
    Audit {
        /// Only rows about this account.
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Accounts with their balances.
    List {
        /// An account id, or part of a name.
        #[arg(long)]
        search: Option<String>,
    },
    /// A new account; its first API key is the last line printed.
    Create {
        #[arg(long)]
        name: Option<String>,
        /// Starting credits (decimal); the server's sign-up amount when absent.
        #[arg(long)]
        credits: Option<String>,
    },
    /// One account.
    Show { account: String },
    /// Add credits (negative to take some back).
    Grant {
        account: String,
        #[arg(allow_hyphen_values = true)]
        credits: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Disable an account: its keys stop working.
    Disable { account: String },
    /// Enable a disabled account.
    Enable { account: String },
}

/// Limits as flags; `none` clears one, a flag left out leaves it as it is.
#[derive(Debug, Args)]
struct LimitFlags {
    /// Creates per minute, or none.
    #[arg(long)]
    rpm: Option<String>,
    /// Tasks pending or processing at once, or none.
    #[arg(long)]
    max_concurrent: Option<String>,
    /// Credits per budget period (decimal), or none.
    #[arg(long)]
    budget: Option<String>,
    /// day, month or total.
    #[arg(long)]
    budget_period: Option<String>,
    /// Comma-separated model ids, or all.
    #[arg(long)]
    models: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// An account's keys with their limits.
    List { account: String },
    /// A new key for an account; the key itself is the last line printed.
    Create {
        account: String,
        #[arg(long)]
        name: Option<String>,
        /// May the key list, make and revoke the account's keys.
        #[arg(long)]
        manage_keys: bool,
        #[command(flatten)]
        limits: LimitFlags,
    },
    /// Change a key's limits.
    Update {
        key: String,
        #[command(flatten)]
        limits: LimitFlags,
    },
    /// Revoke a key.
    Revoke { key: String },
}

#[derive(Debug, Subcommand)]
enum CodesCommand {
    /// Make a batch of codes; they are printed one per line, only now.
    Create {
        /// Credits each use adds (decimal).
        #[arg(long)]
        value: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Uses per code (each account once).
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// When the codes stop working: YYYY-MM-DD (00:00 UTC) or Unix seconds.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    /// Every batch with its redemptions.
    List,
}

/// The admin API over HTTP.
struct Admin {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Admin {
    fn new(url: &str, key: Option<String>) -> anyhow::Result<Self> {
        let key = key.filter(|k| !k.is_empty()).ok_or_else(|| {
            anyhow::anyhow!("no admin key: set VIDGATE_ADMIN_KEY (or pass --admin-key) to the server's admin key")
        })?;
        let http = reqwest::Client::builder().build()?;
        Ok(Self { base: url.trim_end_matches('/').to_owned(), key, http })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<String, ClientError> {
        let resp = req.bearer_auth(&self.key).send().await.map_err(|e| {
            if e.is_connect() { ClientError::Unreachable(self.base.clone()) } else { ClientError::Other(e.to_string()) }
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| ClientError::Other(e.to_string()))?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        match serde_json::from_str::<vidgate_api::error::ErrorBody>(&text) {
            Ok(b) => {
                Err(ClientError::Api { status, code: b.error.code, message: b.error.message, param: b.error.param })
            }
            Err(_) => Err(ClientError::Other(format!("HTTP {status}"))),
        }
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        let text = self.send(req).await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Other(format!("unexpected answer: {e}")))
    }

    async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.json(reqwest::Method::POST, path, Some(body)).await
    }
}

/// A path segment or query value, percent-encoded.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs.iter().filter_map(|(k, v)| v.map(|v| format!("{k}={}", enc(v)))).collect::<Vec<_>>();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// Text of a JSON field for a table cell.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints rows as aligned columns.
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        output::line(padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn rows(items: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    items.as_array().map_or_else(Vec::new, |list| {
        list.iter().map(|item| fields.iter().map(|f| cell(&item[*f])).collect()).collect()
    })
}

/// A limit flag: `none` (or `all` for models) clears it, anything else sets it.
fn limit_fields(flags: &LimitFlags) -> anyhow::Result<Map<String, Value>> {
    let mut body = Map::new();
    let cleared = |v: &str| matches!(v.trim().to_ascii_lowercase().as_str(), "none" | "null" | "off");
    for (name, value) in [("rpm", &flags.rpm), ("max_concurrent", &flags.max_concurrent)] {
        if let Some(v) = value {
            let v = if cleared(v) {
                Value::Null
            } else {
                json!(
                    v.trim()
                        .parse::<i64>()
                        .map_err(|_| anyhow::anyhow!("--{} must be a number or none", name.replace('_', "-")))?
                )
            };
            body.insert(name.to_owned(), v);
        }
    }
    if let Some(b) = &flags.budget {
        body.insert("budget_credits".to_owned(), if cleared(b) { Value::Null } else { json!(b.trim()) });
    }
    if let Some(p) = &flags.budget_period {
        body.insert("budget_period".to_owned(), json!(p.trim()));
    }
    if let Some(m) = &flags.models {
        let value = if m.trim().eq_ignore_ascii_case("all") {
            Value::Null
        } else {
            json!(m.split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>())
        };
        body.insert("allowed_models".to_owned(), value);
    }
    Ok(body)
}

/// `YYYY-MM-DD` (00:00 UTC) or Unix seconds, as Unix seconds.
fn unix_seconds(s: &str) -> anyhow::Result<i64> {
    if let Some(ms) = crate::limits::parse_utc_date(s.trim()) {
        return Ok(ms / 1000);
    }
    s.trim().parse().map_err(|_| anyhow::anyhow!("--expires must be YYYY-MM-DD or Unix seconds"))
}

const ACCOUNT_FIELDS: [&str; 6] = ["id", "name", "remaining_credits", "held_credits", "used_credits", "disabled"];
const KEY_FIELDS: [&str; 9] =
    ["id", "name", "prefix", "allowed_models", "rpm", "max_concurrent", "budget_credits", "budget_period", "revoked"];

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let admin = Admin::new(&args.url, args.admin_key)?;
    let show = |v: &Value, headers: &[&str], fields: &[&str]| {
        if args.json {
            output::line(&serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            let list = if v.is_array() { v.clone() } else { Value::Array(vec![v.clone()]) };
            print_table(headers, &rows(&list, fields));
        }
    };
    match args.command {
        AdminCommand::Accounts { command } => match command {
            AccountsCommand::List { search } => {
                let v = admin.get(&format!("/admin/accounts{}", query(&[("search", search.as_deref())]))).await?;
                show(&v, &["ID", "NAME", "REMAINING", "HELD", "USED", "DISABLED"], &ACCOUNT_FIELDS);
            }
            AccountsCommand::Create { name, credits } => {
                let mut body = Map::new();
                if let Some(n) = name {
                    body.insert("name".to_owned(), json!(n));
                }
                if let Some(c) = credits {
                    body.insert("credits".to_owned(), json!(c));
                }
                let v = admin.post("/admin/accounts", &Value::Object(body)).await?;
                if args.json {
                    output::line(&serde_json::to_string_pretty(&v)?);
                } else {
                    output::line(&format!(
                        "# account {} with {} credits",
                        cell(&v["account"]["id"]),
                        cell(&v["account"]["remaining_credits"])
                    ));
                    output::line(&cell(&v["api_key"]));
                }
            }
            AccountsCommand::Show { account } => {
                let v = admin.get(&format!("/admin/accounts/{}", enc(&account))).await?;
                show(&v, &["ID", "NAME", "REMAINING", "HELD", "USED", "DISABLED"], &ACCOUNT_FIELDS);
            }
            AccountsCommand::Grant { account, credits, note } => {
                let mut body = json!({ "credits": credits });
                if let Some(n) = note {
                    body["note"] = json!(n);
                }
                let v = admin.post(&format!("/admin/accounts/{}/credits", enc(&account)), &body).await?;
                show(&v, &["REMAINING"], &["remaining_credits"]);
            }
            AccountsCommand::Disable { account } => {
                let v = admin.post(&format!("/admin/accounts/{}/disable", enc(&account)), &json!({})).await?;
                show(&v, &["ID", "NAME", "REMAINING", "HELD", "USED", "DISABLED"], &ACCOUNT_FIELDS);
            }
            AccountsCommand::Enable { account } => {
                let v = admin.post(&format!("/admin/accounts/{}/enable", enc(&account)), &json!({})).await?;
                show(&v, &["ID", "NAME", "REMAINING", "HELD", "USED", "DISABLED"], &ACCOUNT_FIELDS);
            }
        },
        AdminCommand::Keys { command } => {
            let headers = ["ID", "NAME", "PREFIX", "MODELS", "RPM", "CONCURRENT", "BUDGET", "PERIOD", "REVOKED"];
            match command {
                KeysCommand::List { account } => {
                    let v = admin.get(&format!("/admin/accounts/{}/keys", enc(&account))).await?;
                    show(&v, &headers, &KEY_FIELDS);
                }
                KeysCommand::Create { account, name, manage_keys, limits } => {
                    let mut body = limit_fields(&limits)?;
                    if let Some(n) = name {
                        body.insert("name".to_owned(), json!(n));
                    }
                    if manage_keys {
                        body.insert("manage_keys".to_owned(), json!(true));
                    }
                    let v =
                        admin.post(&format!("/admin/accounts/{}/keys", enc(&account)), &Value::Object(body)).await?;
                    if args.json {
                        output::line(&serde_json::to_string_pretty(&v)?);
                    } else {
                        output::line(&format!(
                            "# key {} of account {}",
                            cell(&v["key"]["id"]),
                            cell(&v["key"]["account_id"])
                        ));
                        output::line(&cell(&v["api_key"]));
                    }
                }
                KeysCommand::Update { key, limits } => {
                    let body = limit_fields(&limits)?;
                    if body.is_empty() {
                        anyhow::bail!(
                            "nothing to change: give --rpm, --max-concurrent, --budget, --budget-period or --models"
                        );
                    }
                    let v = admin
                        .json(reqwest::Method::PATCH, &format!("/admin/keys/{}", enc(&key)), Some(&Value::Object(body)))
                        .await?;
                    show(&v, &headers, &KEY_FIELDS);
                }
                KeysCommand::Revoke { key } => {
                    let v = admin.post(&format!("/admin/keys/{}/revoke", enc(&key)), &json!({})).await?;
                    show(&v, &headers, &KEY_FIELDS);
                }
            }
        }
        AdminCommand::Codes { command } => match command {
            CodesCommand::Create { value, count, uses, expires, note } => {
                let mut body = json!({ "value": value, "count": count, "uses_per_code": uses });
                if let Some(e) = expires {
                    body["expires_at"] = json!(unix_seconds(&e)?);
                }
                if let Some(n) = note {
                    body["note"] = json!(n);
                }
                let v = admin.post("/admin/codes", &body).await?;
                if args.json {
                    output::line(&serde_json::to_string_pretty(&v)?);
                } else {
                    output::line(&format!("# batch {}: {} codes, shown only now", cell(&v["batch"]["id"]), count));
                    for c in v["codes"].as_array().into_iter().flatten() {
                        output::line(&cell(c));
                    }
                }
            }
            CodesCommand::List => {
                let v = admin.get("/admin/codes").await?;
                let list = &v["data"];
                if args.json {
                    output::line(&serde_json::to_string_pretty(&v)?);
                } else {
                    let mut r =
                        rows(list, &["id", "value", "count", "uses_per_code", "redeemed", "expires_at", "note"]);
                    for row in &mut r {
                        // Units to credits, exactly.
                        if let Ok(units) = row[1].parse::<i64>() {
                            row[1] = vidgate_api::credits::Credits::from_units(units).to_string();
                        }
                    }
                    print_table(&["BATCH", "CREDITS", "CODES", "USES", "REDEEMED", "EXPIRES", "NOTE"], &r);
                }
            }
        },
        AdminCommand::Usage { account, from, to, group_by, csv } => {
            let path = format!(
                "/admin/usage{}",
                query(&[
                    ("account", account.as_deref()),
                    ("from", from.as_deref()),
                    ("to", to.as_deref()),
                    ("group_by", Some(group_by.as_str())),
                ])
            );
            if csv {
                let req = admin.http.get(format!("{}{path}", admin.base)).header("accept", "text/csv");
                let text = admin.send(req).await?;
                for line in text.lines() {
                    output::line(line);
                }
            } else {
                let v = admin.get(&path).await?;
                if args.json {
                    output::line(&serde_json::to_string_pretty(&v)?);
                } else {
                    let mut r = rows(&v["data"], &["group", "tasks", "credits_charged", "video_seconds"]);
                    r.push(vec![
                        "total".to_owned(),
                        cell(&v["total"]["tasks"]),
                        cell(&v["total"]["credits_charged"]),
                        cell(&v["total"]["video_seconds"]),
                    ]);
                    for row in &mut r {
                        if let Ok(units) = row[2].parse::<i64>() {
                            row[2] = vidgate_api::credits::Credits::from_units(units).to_string();
                        }
                    }
                    print_table(&[&group_by.to_uppercase(), "TASKS", "CREDITS", "VIDEO_SECONDS"], &r);
                }
            }
        }
        AdminCommand::Audit { account, limit } => {
            let limit = limit.to_string();
            let v = admin
                .get(&format!("/admin/audit{}", query(&[("account", account.as_deref()), ("limit", Some(&limit))])))
                .await?;
            if args.json {
                output::line(&serde_json::to_string_pretty(&v)?);
            } else {
                let mut r = Vec::new();
                for e in v["data"].as_array().into_iter().flatten() {
                    let at = e["created_at"].as_i64().map(crate::limits::format_utc).unwrap_or_default();
                    r.push(vec![
                        at,
                        cell(&e["actor"]),
                        cell(&e["action"]),
                        cell(&e["target"]),
                        cell(&e["source"]),
                        e["before"].to_string(),
                        e["after"].to_string(),
                    ]);
                }
                print_table(&["TIME", "ACTOR", "ACTION", "TARGET", "SOURCE", "BEFORE", "AFTER"], &r);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_flags_clear_with_none_and_leave_the_rest_alone() {
        let flags = LimitFlags {
            rpm: Some("none".to_owned()),
            max_concurrent: Some("3".to_owned()),
            budget: Some("12.5".to_owned()),
            budget_period: None,
            models: Some("all".to_owned()),
        };
        let body = limit_fields(&flags).unwrap();
        assert_eq!(
            Value::Object(body),
            json!({"rpm": null, "max_concurrent": 3, "budget_credits": "12.5", "allowed_models": null})
        );
        let bad = LimitFlags {
            rpm: Some("fast".to_owned()),
            max_concurrent: None,
            budget: None,
            budget_period: None,
            models: None,
        };
        assert!(limit_fields(&bad).is_err());
        assert_eq!(query(&[("search", Some("a b&c")), ("x", None)]), "?search=a%20b%26c");
        assert_eq!(unix_seconds("2025-12-03").unwrap(), 1_764_720_000);
    }
}
