//! `vidgate-bench --soak N`: the seed's 99.9%, measured. Each run starts the real
//! `vidgate-sim` process (Kling, fal and Replicate on one address, each refusing
//! 10% of submits with a 503 and failing 10% of the tasks it accepts) and the real
//! release `vidgate` in front of it with one route per provider (official Kling
//! cheapest, then fal's standard tier, then Replicate), pushes N text-to-video
//! tasks through, and checks through the admin API that every task ended, how
//! many failed, that none was charged twice and that the ledger balances to the
//! unit. Three such runs, then one in which the cheapest provider goes down (503
//! on every call) a quarter of the way in, so tasks it had accepted are given up
//! on after the grace and resubmitted. Prints attempts per task and the extra
//! upstream cost against every task running once on the cheapest route; the
//! targets (at most 2 failures per run at N = 2000; none with a provider down)
//! are checked here, never in a timed test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::{Args, Kill, start_sim, start_vidgate_with};

type Error = Box<dyn std::error::Error + Send + Sync>;

const ADMIN_KEY: &str = "sk-admin-soak-bench";
/// What the cheapest route costs a task (Kling 3.0 720p, 3 s, at $0.084/s).
const CHEAPEST_TASK_USD: f64 = 0.084 * 3.0;
/// The grace before an upstream task whose provider stopped answering is given
/// up on (the default is 120 s; shorter here so a run ends in minutes).
const GRACE_SECS: u64 = 10;

/// One HTTP/1 keep-alive connection to a local server.
struct Conn {
    port: u16,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(port: u16) -> Self {
        Self { port, sender: None }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Error> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().ok_or("no connection")?;
        sender.ready().await?;
        let mut req = Request::builder().method(method).uri(path).header("host", "127.0.0.1");
        if !key.is_empty() {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let resp = sender.send_request(req.body(Full::new(body))?).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }
}

/// The config of the vidgate under test: three providers at the sim, one route
/// each for Kling 3.0 text-to-video, priced as `examples/vidgate.toml`.
fn config(sim: &str, dir: &std::path::Path) -> Result<std::path::PathBuf, Error> {
    for (file, value) in [("ak", "ak-sim"), ("sk", "sk-sim"), ("fal", "fal-sim"), ("replicate", "r8-sim")] {
        std::fs::write(dir.join(file), value)?;
    }
    let file = |name: &str| dir.join(name).display().to_string();
    let text = format!(
        "workers = 8\nupstream_poll_min_ms = 200\nupstream_poll_max_ms = 1000\n\
         upstream_dead_grace_secs = {GRACE_SECS}\n\
         [providers.kling]\nkind = \"kling\"\nbase_url = \"{sim}/kling\"\naccess_key_file = \"{ak}\"\n\
         secret_key_file = \"{sk}\"\ntimeout_secs = 5\n\
         [providers.fal]\nkind = \"fal\"\nbase_url = \"{sim}/fal\"\napi_key_file = \"{fal}\"\ntimeout_secs = 5\n\
         [providers.replicate]\nkind = \"replicate\"\nbase_url = \"{sim}/replicate\"\napi_key_file = \"{rep}\"\n\
         timeout_secs = 5\n\
         [[routes]]\nmodel = \"kling-v3-text-to-video\"\nprovider = \"kling\"\nupstream_model = \"kling-v3\"\n\
         cost_usd_per_second = {{ \"720p\" = 0.084, \"720p_sound\" = 0.126, \"1080p\" = 0.112, \"1080p_sound\" = 0.168 }}\n\
         supports = [\"multi_shot\", \"sound\", \"1080p\"]\n\
         [[routes]]\nmodel = \"kling-v3-text-to-video\"\nprovider = \"fal\"\n\
         upstream_models = {{ \"720p\" = \"fal-ai/kling-video/v3/standard/text-to-video\", \
         \"1080p\" = \"fal-ai/kling-video/v3/pro/text-to-video\" }}\n\
         cost_usd_per_second = {{ \"720p\" = 0.084, \"720p_sound\" = 0.126, \"1080p\" = 0.112, \"1080p_sound\" = 0.168 }}\n\
         supports = [\"sound\"]\n\
         [[routes]]\nmodel = \"kling-v3-text-to-video\"\nprovider = \"replicate\"\n\
         upstream_model = \"kwaivgi/kling-v3-video\"\n\
         cost_usd_per_second = {{ \"720p\" = 0.168, \"720p_sound\" = 0.252, \"1080p\" = 0.168, \"1080p_sound\" = 0.252 }}\n\
         supports = [\"sound\", \"1080p\"]\n",
        ak = file("ak"),
        sk = file("sk"),
        fal = file("fal"),
        rep = file("replicate"),
    );
    let path = dir.join("soak.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// What one run found.
#[derive(Debug, Default)]
struct Report {
    label: String,
    tasks: usize,
    failed: usize,
    failed_codes: BTreeMap<String, usize>,
    secs: f64,
    /// Attempt rows per task (every submit, refused ones included).
    rows: usize,
    /// Upstream tasks (accepted submits) per task: count of tasks by that number.
    accepted: BTreeMap<usize, usize>,
    refused: usize,
    abandoned: usize,
    upstream_usd: f64,
    charged_units: i64,
    ledger_ok: bool,
    double_charges: usize,
    by_provider: BTreeMap<String, usize>,
}

/// Credits (as the admin API shows an account's) in units of 1/10000 credit.
fn units(credits: &Value) -> i64 {
    (credits.as_f64().unwrap_or(f64::NAN) * 10_000.0).round() as i64
}

/// A task's `usage.credits_*`, which already count units.
fn task_units(v: &Value) -> i64 {
    v.as_f64().unwrap_or(f64::NAN).round() as i64
}

/// One run: `down` names the provider taken down a quarter of the way in.
async fn run(args: &Args, n: usize, seed: u64, down: Option<&'static str>) -> Result<Report, Error> {
    let seed_text = seed.to_string();
    let (_sim, sim) = start_sim(
        args,
        &[
            "--polls",
            "2",
            "--seed",
            &seed_text,
            "--submit-fault",
            "503",
            "--submit-fault-rate",
            "0.1",
            "--fail-rate",
            "0.1",
        ],
    )?;
    let sim_port: u16 = sim.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or("bad sim url")?;
    let dir = std::env::temp_dir().join(format!("vidgate-bench-soak-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = config(&sim, &dir)?.display().to_string();
    let name = format!("soak{seed}");
    let (front, port, _key): (Kill, u16, String) = start_vidgate_with(
        args,
        &name,
        &["--config", &path, "--allow-private-urls"],
        // Only errors: thousands of expected warnings (refused submits, silent
        // polls) would drown the figures.
        &[("VIDGATE_ADMIN_KEY", ADMIN_KEY.to_owned()), ("RUST_LOG", "error".to_owned())],
    )?;
    let mut admin = Conn::new(port);
    let grant = 10_000_000;
    let (s, acct) = admin
        .call(Method::POST, "/admin/accounts", ADMIN_KEY, Some(&json!({"name": "soak", "credits": grant})))
        .await?;
    if s != 200 {
        return Err(format!("creating the account answered {s}: {acct}").into());
    }
    let key = acct["api_key"].as_str().ok_or("no api key")?.to_owned();
    let account = acct["account"]["id"].as_str().ok_or("no account id")?.to_owned();

    let started = Instant::now();
    // Create the tasks over 16 connections, taking the provider down on the way.
    let per = n.div_ceil(16);
    let mut handles = Vec::new();
    for c in 0..16 {
        let key = key.clone();
        handles.push(tokio::spawn(async move {
            let mut conn = Conn::new(port);
            let mut ids = Vec::new();
            for i in 0..per {
                let body = json!({"model": "kling-v3-text-to-video", "prompt": format!("soak {c}-{i}"), "duration": 3});
                let (s, t) = conn.call(Method::POST, "/v1/videos/generations", &key, Some(&body)).await?;
                if s != 200 {
                    return Err::<Vec<String>, Error>(format!("create answered {s}: {t}").into());
                }
                ids.push(t["id"].as_str().unwrap_or_default().to_owned());
                if let Some(p) = down
                    && c == 0
                    && i == per / 4
                {
                    let mut sim_conn = Conn::new(sim_port);
                    sim_conn.call(Method::POST, &format!("/control/down/{p}/503"), "", None).await?;
                }
            }
            Ok(ids)
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.extend(h.await??);
    }
    // Wait for every task to end.
    let mut conn = Conn::new(port);
    let mut report = Report { label: String::new(), tasks: ids.len(), ..Report::default() };
    let mut open: Vec<String> = ids.clone();
    let mut ended: BTreeMap<String, Value> = BTreeMap::new();
    while !open.is_empty() {
        if started.elapsed() > Duration::from_secs(1800) {
            return Err(format!("{} tasks did not end in 30 minutes", open.len()).into());
        }
        let mut still = Vec::new();
        for id in open {
            let (_, t) = conn.call(Method::GET, &format!("/v1/tasks/{id}"), &key, None).await?;
            if t["status"] == "completed" || t["status"] == "failed" {
                ended.insert(id, t);
            } else {
                still.push(id);
            }
        }
        open = still;
        if !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    report.secs = started.elapsed().as_secs_f64();
    // What each task cost, and how it got there.
    for (id, t) in &ended {
        let charged = task_units(&t["usage"]["credits_charged"]);
        if t["status"] == "completed" {
            if charged != task_units(&t["usage"]["credits_reserved"]) {
                report.double_charges += 1;
            }
        } else {
            report.failed += 1;
            *report.failed_codes.entry(t["error"]["code"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
            if charged != 0 {
                report.double_charges += 1;
            }
        }
        report.charged_units += charged;
        let (_, a) = conn.call(Method::GET, &format!("/admin/tasks/{id}/attempts"), ADMIN_KEY, None).await?;
        let list = a["attempts"].as_array().cloned().unwrap_or_default();
        report.rows += list.len();
        let accepted = list.iter().filter(|x| x["status"] != "error").count();
        *report.accepted.entry(accepted).or_default() += 1;
        report.refused += list.iter().filter(|x| x["status"] == "error").count();
        report.abandoned += list.iter().filter(|x| x["status"] == "abandoned").count();
        report.upstream_usd += list.iter().filter_map(|x| x["cost_usd"].as_f64()).sum::<f64>();
        if let Some(winner) = list.iter().find(|x| x["status"] == "succeeded") {
            *report.by_provider.entry(winner["provider"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        }
    }
    // The ledger, to the unit: nothing held, what was used is what the tasks were
    // charged, and grant = remaining + held + used.
    let (_, acct) = admin.call(Method::GET, &format!("/admin/accounts/{account}"), ADMIN_KEY, None).await?;
    let acct = if acct["account"].is_object() { acct["account"].clone() } else { acct };
    let (remaining, held, used) =
        (units(&acct["remaining_credits"]), units(&acct["held_credits"]), units(&acct["used_credits"]));
    report.ledger_ok = held == 0 && used == report.charged_units && remaining + held + used == grant * 10_000;
    if !report.ledger_ok {
        println!(
            "  ledger: grant {} units, remaining {remaining}, held {held}, used {used}, charged to tasks {}",
            grant * 10_000,
            report.charged_units
        );
    }
    drop(front);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

fn print(r: &Report) {
    let n = r.tasks.max(1) as f64;
    let accepted: Vec<String> = r.accepted.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let extra = (r.upstream_usd / (n * CHEAPEST_TASK_USD) - 1.0) * 100.0;
    println!(
        "{}: {} tasks in {:.0} s; failed {} {:?}; attempts per task {:.3} (refused submits {}, abandoned {}); \
         upstream tasks per task {{{}}}; served by {:?}; upstream cost ${:.2} = {:+.1}% over the cheapest route; \
         double charges {}; ledger {}",
        r.label,
        r.tasks,
        r.secs,
        r.failed,
        r.failed_codes,
        r.rows as f64 / n,
        r.refused,
        r.abandoned,
        accepted.join(", "),
        r.by_provider,
        r.upstream_usd,
        extra,
        r.double_charges,
        if r.ledger_ok { "balanced to the unit" } else { "NOT BALANCED" },
    );
}

/// Three runs at 10% + 10% faults, then one with the cheapest provider down.
pub async fn soak(args: &Args, n: usize, runs: usize) -> Result<(), Error> {
    println!(
        "vidgate-bench --soak {n}: vidgate (release, SQLite) in front of vidgate-sim: Kling, fal and Replicate each \
         refusing 10% of submits (503) and failing 10% of accepted tasks; dead-provider grace {GRACE_SECS} s"
    );
    let mut all_met = true;
    for k in 0..runs {
        let mut r = run(args, n, 101 + k as u64, None).await?;
        r.label = format!("run {}", k + 1);
        print(&r);
        let met = r.failed <= 2 && r.double_charges == 0 && r.ledger_ok;
        all_met &= met;
        println!("  at most 2 failed, no double charge, ledger balanced: {}", if met { "MET" } else { "MISSED" });
    }
    let mut r = run(args, n, 201, Some("kling")).await?;
    r.label = "kling down from 1/4 in".to_owned();
    print(&r);
    let met = r.failed == 0 && r.double_charges == 0 && r.ledger_ok;
    all_met &= met;
    println!("  none failed, no double charge, ledger balanced: {}", if met { "MET" } else { "MISSED" });
    if all_met { Ok(()) } else { Err("a soak target was missed".into()) }
}
