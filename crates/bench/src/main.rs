//! `vidgate-bench`: starts the release `vidgate` (SQLite, workers paused so no
//! rendering competes with the API path) and, in the same run, a bare hyper server
//! answering a constant (the ceiling), then drives each from loopback with a
//! closed-loop load generator on keep-alive connections and prints requests/s and
//! latency percentiles for the ceiling, task creation and task polling. The
//! upstream modes drive vidgate and the stand-in `vidgate-sim` as processes:
//! `--e2e N`, `--inflight N` and `--soak N` (failover under faults, `soak.rs`).

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;

mod api;
mod soak;

struct Args {
    connections: usize,
    seconds: f64,
    vidgate: std::path::PathBuf,
    /// With N > 0: instead of the API phases, measure the CPU a vidgate spends
    /// keeping N upstream tasks in flight (polled every 30 s).
    inflight: usize,
    steady_secs: f64,
    /// Poll interval in the --inflight mode.
    poll_secs: u64,
    /// With N > 0: end-to-end tasks per second through vidgate and the stand-in.
    e2e: usize,
    /// With N > 0: N tasks through three faulty providers, `soak_runs` times, then
    /// once with a provider down (`soak.rs`).
    soak: usize,
    soak_runs: usize,
    /// PostgreSQL server to bench on instead of SQLite: a fresh database is made
    /// on it for the run and dropped after (`postgres://127.0.0.1:5432/test`).
    database_url: Option<String>,
    /// Tasks stored before the measured phases (a database in use, not empty).
    seed: usize,
    /// With S > 0: after the phases, S seconds of creates while the SQLite
    /// write-ahead log's size is sampled every second.
    sustain_secs: f64,
}

fn parse_args() -> Result<(Args, bool), String> {
    let mut it = std::env::args().skip(1);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut args = Args {
        connections: 24,
        seconds: 5.0,
        vidgate: exe.with_file_name("vidgate"),
        inflight: 0,
        steady_secs: 60.0,
        poll_secs: 30,
        e2e: 0,
        soak: 0,
        soak_runs: 3,
        database_url: std::env::var("VIDGATE_DATABASE_URL").ok().filter(|u| !u.is_empty()),
        seed: 0,
        sustain_secs: 0.0,
    };
    let mut ceiling = false;
    while let Some(a) = it.next() {
        match a.as_str() {
            "ceiling" => ceiling = true,
            "--connections" => args.connections = it.next().and_then(|v| v.parse().ok()).ok_or("--connections N")?,
            "--seconds" => args.seconds = it.next().and_then(|v| v.parse().ok()).ok_or("--seconds S")?,
            "--vidgate" => args.vidgate = it.next().ok_or("--vidgate PATH")?.into(),
            "--inflight" => args.inflight = it.next().and_then(|v| v.parse().ok()).ok_or("--inflight N")?,
            "--poll-secs" => args.poll_secs = it.next().and_then(|v| v.parse().ok()).ok_or("--poll-secs S")?,
            "--e2e" => args.e2e = it.next().and_then(|v| v.parse().ok()).ok_or("--e2e N")?,
            "--soak" => args.soak = it.next().and_then(|v| v.parse().ok()).ok_or("--soak N")?,
            "--soak-runs" => args.soak_runs = it.next().and_then(|v| v.parse().ok()).ok_or("--soak-runs N")?,
            "--database-url" => args.database_url = Some(it.next().ok_or("--database-url URL")?),
            "--seed" => args.seed = it.next().and_then(|v| v.parse().ok()).ok_or("--seed N")?,
            "--sustain" => args.sustain_secs = it.next().and_then(|v| v.parse().ok()).ok_or("--sustain S")?,
            "--steady-secs" => args.steady_secs = it.next().and_then(|v| v.parse().ok()).ok_or("--steady-secs S")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((args, ceiling))
}

/// The ceiling: a bare hyper HTTP/1 server answering a constant, in its own process.
async fn run_ceiling() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("port {}", listener.local_addr()?.port());
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(br#"{"status":"ok"}"#))))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

struct Phase {
    name: String,
    requests: usize,
    errors: usize,
    secs: f64,
    latencies_us: Vec<u64>,
    bodies: Vec<Bytes>,
    /// Latencies and kept bodies of each connection, by connection number.
    per_conn: Vec<(Vec<u64>, Vec<Bytes>)>,
}

/// Requests answered successfully so far by every `drive` (read by samplers).
static ANSWERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Phase {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
    /// The part of the phase driven by the connections `pick` selects.
    fn part(&self, name: &str, pick: impl Fn(usize) -> bool) -> Phase {
        let mut lat: Vec<u64> =
            self.per_conn.iter().enumerate().filter(|(c, _)| pick(*c)).flat_map(|(_, (l, _))| l.clone()).collect();
        lat.sort_unstable();
        Phase {
            name: name.to_owned(),
            requests: lat.len(),
            errors: 0,
            secs: self.secs,
            latencies_us: lat,
            bodies: Vec::new(),
            per_conn: Vec::new(),
        }
    }
    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// The warm-up of a phase: requests in it are made but not counted.
const WARM_UP: Duration = Duration::from_secs(1);

/// Drives `make(i)` requests over `connections` keep-alive connections for `secs`
/// after a warm-up of `warm_up` that is not counted.
async fn drive(
    warm_up: Duration,
    name: &str,
    port: u16,
    connections: usize,
    secs: f64,
    keep_bodies: bool,
    make: impl Fn(usize) -> Request<Full<Bytes>> + Send + Sync + Clone + 'static,
) -> Result<Phase, Box<dyn std::error::Error + Send + Sync>> {
    let start = Instant::now() + warm_up;
    let end = start + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    for c in 0..connections {
        let make = make.clone();
        handles.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut bodies = Vec::new();
            let mut i = c;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let resp = sender.send_request(make(i)).await?;
                let ok = resp.status().is_success();
                let body = resp.into_body().collect().await?.to_bytes();
                let t1 = Instant::now();
                if ok {
                    ANSWERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if t0 >= start {
                    lat.push((t1 - t0).as_micros() as u64);
                    if !ok {
                        errors += 1;
                    }
                    if keep_bodies && ok {
                        bodies.push(body);
                    }
                }
                i += connections;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((lat, errors, bodies))
        }));
    }
    let mut phase = Phase {
        name: name.to_owned(),
        requests: 0,
        errors: 0,
        secs,
        latencies_us: Vec::new(),
        bodies: Vec::new(),
        per_conn: Vec::new(),
    };
    for h in handles {
        let (lat, errors, bodies) = h.await??;
        phase.requests += lat.len();
        phase.errors += errors;
        phase.latencies_us.extend(lat.iter().copied());
        phase.bodies.extend(bodies.iter().cloned());
        phase.per_conn.push((lat, bodies));
    }
    phase.latencies_us.sort_unstable();
    Ok(phase)
}

/// Reads a started child's stdout until `pred` finds what it needs.
fn read_until(child: &mut Child, mut pred: impl FnMut(&str) -> bool) -> Result<(), String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().ok_or("the process exited early")?.map_err(|e| e.to_string())?;
        if pred(&line) {
            std::thread::spawn(move || for _ in lines {});
            return Ok(());
        }
    }
}

/// A child process killed on drop, with the folder it used (removed then too).
struct Kill(Child, Option<std::path::PathBuf>);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(dir) = &self.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (args, ceiling) = parse_args()?;
    if ceiling {
        return Ok(run_ceiling().await?);
    }
    if args.inflight > 0 {
        return inflight(&args).await;
    }
    if args.e2e > 0 {
        return e2e(&args).await;
    }
    if args.soak > 0 {
        return soak::soak(&args, args.soak, args.soak_runs).await;
    }
    api::run(&args).await
}

/// Starts `vidgate serve` with `flags`, `env` and a fresh data folder (removed
/// with the process); returns it, its port and its first API key.
fn start_vidgate_with(
    args: &Args,
    name: &str,
    flags: &[&str],
    env: &[(&str, String)],
) -> Result<(Kill, u16, String), String> {
    let data = std::env::temp_dir().join(format!("vidgate-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (mut child, port, keys) = start_vidgate_in(args, &data, flags, env)?;
    child.1 = Some(data);
    Ok((child, port, keys.api))
}

/// The keys a first start prints (none on a later start of the same database).
#[derive(Default)]
struct Keys {
    admin: String,
    api: String,
}

/// Starts `vidgate serve` on the data folder `data` (kept); returns it, its port
/// and the keys it printed.
fn start_vidgate_in(
    args: &Args,
    data: &std::path::Path,
    flags: &[&str],
    env: &[(&str, String)],
) -> Result<(Kill, u16, Keys), String> {
    let mut cmd = Command::new(&args.vidgate);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().map_err(|e| {
        format!("cannot start {}: {e} (build it with cargo build --release -p vidgate)", args.vidgate.display())
    })?;
    let mut child = Kill(child, None);
    let mut keys = Keys::default();
    let mut port = 0u16;
    read_until(&mut child.0, |l| {
        if let Some(k) = l.trim().strip_prefix("API key:") {
            keys.api = k.trim().to_owned();
        }
        if let Some(k) = l.trim().strip_prefix("admin key:") {
            keys.admin = k.trim().to_owned();
        }
        if let Some(u) = l.trim().strip_prefix("playground:") {
            port = u.trim().trim_end_matches('/').rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        }
        port != 0
    })?;
    Ok((child, port, keys))
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let after = stat.rsplit_once(')').map(|(_, a)| a).ok_or("bad /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of /proc/pid/stat (utime, stime), counted after the ")".
    Ok((ticks(11) + ticks(12)) / 100.0)
}

async fn get_text(port: u16, path: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::builder().uri(path).header("host", "127.0.0.1").body(Full::new(Bytes::new()))?;
    let body = sender.send_request(req).await?.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Text-to-video tasks finished with `status`, from `/metrics` (whatever other
/// labels the series carries).
fn finished(text: &str, status: &str) -> f64 {
    let status = format!("status=\"{status}\"");
    text.lines()
        .filter(|l| l.starts_with("vidgate_tasks_finished_total{"))
        .filter(|l| l.contains("model=\"kling-v3-text-to-video\"") && l.contains(&status))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Starts `vidgate-sim` (next to this binary) with `flags`; returns it and its base URL.
fn start_sim(args: &Args, flags: &[&str]) -> Result<(Kill, String), String> {
    let exe = args.vidgate.with_file_name("vidgate-sim");
    let mut child = Kill(
        Command::new(&exe).args(flags).stdout(Stdio::piped()).spawn().map_err(|e| {
            format!("cannot start {}: {e} (build it with cargo build --release -p vidgate-sim)", exe.display())
        })?,
        None,
    );
    let mut base = String::new();
    read_until(&mut child.0, |l| {
        base = l.trim().to_owned();
        base.starts_with("http://")
    })?;
    Ok((child, base))
}

/// A vidgate routing text-to-video to the sim's Kling API, with `extra` config.
fn start_front(args: &Args, sim: &str, extra: &str) -> Result<(Kill, u16, String, std::path::PathBuf), String> {
    let dir = std::env::temp_dir().join(format!("vidgate-bench-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // The sim's default credentials.
    std::fs::write(dir.join("ak"), "ak-sim").map_err(|e| e.to_string())?;
    std::fs::write(dir.join("sk"), "sk-sim").map_err(|e| e.to_string())?;
    let config = format!(
        "{extra}\n[providers.sim]\nkind = \"kling\"\nbase_url = \"{sim}/kling\"\n\
         access_key_file = \"{ak}\"\nsecret_key_file = \"{sk}\"\nmax_concurrent_polls = 64\n\
         [[routes]]\nmodel = \"kling-v3-text-to-video\"\nprovider = \"sim\"\nupstream_model = \"kling-v3\"\n\
         cost_usd_per_second = {{ \"720p\" = 0.05, \"720p_sound\" = 0.05, \"1080p\" = 0.05, \"1080p_sound\" = 0.05 }}\n",
        ak = dir.join("ak").display(),
        sk = dir.join("sk").display(),
    );
    let path = dir.join("front.toml");
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    let path_str = path.display().to_string();
    // The sim is on loopback over http: results may only be fetched from it with
    // private URLs allowed (a development setting).
    let (child, port, key) = start_vidgate_with(
        args,
        "front",
        &["--config", &path_str, "--allow-private-urls"],
        &[("VIDGATE_SIGNUP_CREDITS", "1000000000".to_owned())],
    )?;
    Ok((child, port, key, dir))
}

/// Creates `n` text-to-video tasks over 16 keep-alive connections.
async fn create_many(port: u16, key: &str, n: usize) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let auth = format!("Bearer {key}");
    let body = Bytes::from_static(br#"{"model":"kling-v3-text-to-video","prompt":"bench","duration":3}"#);
    let per = n.div_ceil(16);
    let mut handles = Vec::new();
    for _ in 0..16 {
        let (auth, body) = (auth.clone(), body.clone());
        handles.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            for _ in 0..per {
                let req = Request::builder()
                    .method(Method::POST)
                    .uri("/v1/videos/generations")
                    .header("host", "127.0.0.1")
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))?;
                let resp = sender.send_request(req).await?;
                if !resp.status().is_success() {
                    return Err(format!("create answered {}", resp.status()).into());
                }
                resp.into_body().collect().await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(per * 16)
}

async fn sim_stat(base: &str, field: &str) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
    let port: u16 = base.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or("bad sim url")?;
    let v: serde_json::Value = serde_json::from_str(&get_text(port, "/stats").await?)?;
    Ok(v[field].as_f64().unwrap_or(0.0))
}

/// Issue: 10000 in-flight upstream tasks must cost little CPU in the steady state.
/// The stand-in upstream (`vidgate-sim --stuck-rate 1`) accepts every task and
/// never finishes it; vidgate polls each at its longest interval.
async fn inflight(args: &Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let n = args.inflight;
    let (_sim, sim) = start_sim(args, &["--stuck-rate", "1"])?;
    let interval = args.poll_secs;
    let extra = format!("upstream_poll_min_ms = {ms}\nupstream_poll_max_ms = {ms}\nworkers = 4", ms = interval * 1000);
    let (front, port, key, dir) = start_front(args, &sim, &extra)?;
    println!(
        "vidgate-bench --inflight {n}: {n} tasks routed to vidgate-sim, which never finishes them; poll every {interval} s"
    );
    let n = create_many(port, &key, n).await?;
    let started = Instant::now();
    while sim_stat(&sim, "accepted").await? < n as f64 {
        if started.elapsed() > Duration::from_secs(300) {
            return Err("the tasks did not all reach the upstream in 5 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the first round of polls pass, so the steady state is measured.
    tokio::time::sleep(Duration::from_secs(interval + 2)).await;
    println!(
        "all {n} tasks in flight after {:.1} s; measuring {} s of steady state",
        started.elapsed().as_secs_f64(),
        args.steady_secs
    );
    let pid = front.0.id();
    let p0 = sim_stat(&sim, "polls").await?;
    let c0 = cpu_secs(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.steady_secs)).await;
    let c1 = cpu_secs(pid)?;
    let dt = t0.elapsed().as_secs_f64();
    let p1 = sim_stat(&sim, "polls").await?;
    println!(
        "{n} upstream tasks in flight: {:.0} polls/s, vidgate used {:.2} CPU-s in {:.0} s = {:.1}% of one core ({:.0} us per poll)",
        (p1 - p0) / dt,
        c1 - c0,
        dt,
        (c1 - c0) / dt * 100.0,
        (c1 - c0) / (p1 - p0).max(1.0) * 1e6,
    );
    drop(front);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// End-to-end tasks per second: `n` tasks through vidgate to the stand-in at zero
/// latency (each finishes on its first poll), from the first create to the last
/// completion, with the result copied into vidgate's storage.
async fn e2e(args: &Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let n = args.e2e;
    let (_sim, sim) = start_sim(args, &["--polls", "1"])?;
    let extra = "upstream_poll_min_ms = 200\nupstream_poll_max_ms = 1000\nworkers = 8";
    let (front, port, key, dir) = start_front(args, &sim, extra)?;
    println!("vidgate-bench --e2e {n}: tasks through vidgate to vidgate-sim (zero latency, done on the first poll)");
    let pid = front.0.id();
    let c0 = cpu_secs(pid)?;
    let t0 = Instant::now();
    let n = create_many(port, &key, n).await?;
    let created = t0.elapsed().as_secs_f64();
    let completed = |m: &str| finished(m, "completed");
    loop {
        let m = get_text(port, "/metrics").await?;
        let failed = finished(&m, "failed");
        if completed(&m) + failed >= n as f64 {
            if failed > 0.0 {
                return Err(format!("{failed} tasks failed").into());
            }
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            return Err("the tasks did not finish in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dt = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid)? - c0;
    println!(
        "{n} tasks created in {created:.2} s and completed in {dt:.2} s: {:.0} tasks/s end to end; vidgate used {cpu:.2} CPU-s ({:.2} ms per task)",
        n as f64 / dt,
        cpu / n as f64 * 1000.0,
    );
    drop(front);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
