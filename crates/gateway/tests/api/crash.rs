//! Tasks survive `kill -9`: the real binary is killed mid-render and restarted on
//! the same data; the task completes once and is charged once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, Backend, fresh_pg_database, split};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) api_key: Option<String>,
}

fn lease_secs<'a>(env: &[(&str, &'a str)]) -> &'a str {
    env.iter().find(|(k, _)| *k == "VIDGATE_LEASE_SECS").map(|(_, v)| *v).unwrap_or("2")
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed assertion must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &std::path::Path, db: Option<&str>, env: &[(&str, &str)]) -> Server {
    start_with(data_dir, db, env, &[])
}

pub(crate) fn start_with(data_dir: &std::path::Path, db: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidgate"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("VIDGATE_LEASE_SECS", lease_secs(env))
        .env("VIDGATE_ADMIN_KEY", ADMIN_KEY)
        .env("VIDGATE_WORKERS", "1")
        .env("VIDGATE_SIGNUP_CREDITS", "1000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(db) = db {
        cmd.env("VIDGATE_DATABASE_URL", db);
    }
    for (k, v) in env {
        if *k != "VIDGATE_LEASE_SECS" {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().expect("start vidgate");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut api_key = None;
    let url = loop {
        let line = lines.next().expect("vidgate exited before it was ready").expect("read stdout");
        if let Some(k) = line.trim().strip_prefix("API key:") {
            api_key = Some(k.trim().to_owned());
        }
        if let Some(u) = line.trim().strip_prefix("playground:") {
            break u.trim().trim_end_matches('/').to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url, api_key }
}

/// `None` for SQLite, a fresh PostgreSQL database's URL, or nothing at all when
/// PostgreSQL is unavailable here (the test then skips).
async fn database(backend: Backend) -> Option<Option<String>> {
    match backend {
        Backend::Sqlite => Some(None),
        Backend::Postgres => fresh_pg_database().await.map(Some),
    }
}

pub(crate) fn kill_9(mut server: Server) {
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// Reopens the store after the servers stopped: the task has one hold and one
/// settlement, and its account's ledger balances. Returns the task's row.
pub(crate) async fn assert_settled_once(url: &str, id: &str) -> vidgate::store::TaskRow {
    let store = vidgate::store::Store::connect(url).await.unwrap();
    let id = &vidgate::ids::TaskId::from_raw(id);
    let row = store.get_task_any(id).await.unwrap().unwrap();
    assert_eq!(store.ledger_entries(id).await.unwrap(), vec!["hold".to_owned(), "settle".to_owned()]);
    let (grants, buckets) = store.ledger_check(&row.account_id).await.unwrap();
    assert_eq!(grants, buckets);
    store.close().await;
    row
}

/// Polls the restarted server until the task ends.
pub(crate) async fn finished_after_restart(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    id: &str,
    secs: u64,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, t) =
            split(client.get(format!("{}/v1/tasks/{id}", server.url)).bearer_auth(key).send().await.unwrap()).await;
        if t["status"] == "completed" || t["status"] == "failed" {
            return t;
        }
        assert!(tokio::time::Instant::now() < deadline, "not finished after restart: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

both_backends!(a_task_survives_kill_9_and_is_charged_once, |backend| async move {
    let Some(db) = database(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let first = start(dir.path(), db.as_deref(), &[]);
    let key = first.api_key.clone().expect("first start prints a key");
    let credits = |url: String, key: String, client: reqwest::Client| async move {
        let (_, b) = split(client.get(format!("{url}/v1/credits")).bearer_auth(key).send().await.unwrap()).await;
        b["data"]["user"]["remaining_credits"].as_f64().unwrap()
    };
    let before = credits(first.url.clone(), key.clone(), client.clone()).await;
    let (s, task) = split(
        client
            .post(format!("{}/v1/videos/generations", first.url))
            .bearer_auth(&key)
            .json(&json!({"model": "kling-v3-text-to-video", "prompt": "a long storm", "duration": 15, "quality": "1080p"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let price = task["usage"]["credits_reserved"].as_f64().unwrap() / 10_000.0;

    // Wait until it is really rendering, then kill -9.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, t) =
            split(client.get(format!("{}/v1/tasks/{id}", first.url)).bearer_auth(&key).send().await.unwrap()).await;
        if t["status"] == "processing" && t["progress"].as_u64().unwrap_or(0) > 10 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never started rendering: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill_9(first);

    let second = start(dir.path(), db.as_deref(), &[]);
    assert!(second.api_key.is_none(), "keys must be printed only on the first start");
    let done = finished_after_restart(&client, &second, &key, &id, 300).await;
    assert_eq!(done["status"], "completed", "{done}");
    let after = credits(second.url.clone(), key.clone(), client.clone()).await;
    assert!((before - price - after).abs() < 1e-9, "charged {} instead of {price}", before - after);
    let mp4 = client.get(done["results"][0].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(vidgate_render::inspect::inspect(&mp4).unwrap().video_frames, 360);
    drop(second);

    // The ledger has one hold and one settlement for the task, and balances.
    let url = db.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("vidgate.db").display()));
    let row = assert_settled_once(&url, &id).await;
    assert!(row.attempts >= 2, "the task was not taken over: {} attempts", row.attempts);
});

both_backends!(a_callback_committed_before_a_crash_arrives_once_after_restart, |backend| async move {
    let Some(db) = database(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (url, rx) = crate::webhooks::start_receiver(vec![]).await;
    // First life: callbacks are not sent at all, so the task's final state and its
    // outbox entry are committed and the process dies before any delivery.
    let first = start(
        dir.path(),
        db.as_deref(),
        &[("VIDGATE_WEBHOOK_CONCURRENCY", "0"), ("VIDGATE_ALLOW_PRIVATE_URLS", "true")],
    );
    let key = first.api_key.clone().unwrap();
    let (s, task) = split(
        client
            .post(format!("{}/v1/videos/generations", first.url))
            .bearer_auth(&key)
            .json(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 3, "callback_url": url}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, t) =
            split(client.get(format!("{}/v1/tasks/{id}", first.url)).bearer_auth(&key).send().await.unwrap()).await;
        if t["status"] == "completed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill_9(first);
    assert_eq!(rx.count(), 0);

    let second = start(dir.path(), db.as_deref(), &[("VIDGATE_ALLOW_PRIVATE_URLS", "true")]);
    let arrived = crate::helpers::eventually(60, || {
        let rx = rx.clone();
        async move { rx.count() >= 1 }
    })
    .await;
    assert!(arrived, "the callback was lost in the crash");
    // Exactly once: it was acknowledged, so nothing more comes. The attempt is
    // recorded after the receiver answered: wait for the record.
    let callbacks = || async {
        split(client.get(format!("{}/v1/tasks/{id}/callbacks", second.url)).bearer_auth(&key).send().await.unwrap())
            .await
            .1
    };
    let recorded =
        crate::helpers::eventually(30, || async { callbacks().await["data"][0]["status"] == "delivered" }).await;
    let cbs = callbacks().await;
    assert!(recorded, "the delivery was not recorded: {cbs}");
    assert_eq!(cbs["data"][0]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(rx.count(), 1);
    let body: serde_json::Value = serde_json::from_slice(&rx.all()[0].body).unwrap();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["status"], "completed");
    drop(second);
});

both_backends!(sigterm_stops_promptly_and_hands_the_task_back, |backend| async move {
    let Some(db) = database(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // A long lease: if the stopping worker did not hand the task back, the restart
    // would have to wait 10 minutes for it.
    let env = [("VIDGATE_LEASE_SECS", "600")];
    let mut first = start(dir.path(), db.as_deref(), &env);
    let key = first.api_key.clone().unwrap();
    let (_, task) = split(
        client
            .post(format!("{}/v1/videos/generations", first.url))
            .bearer_auth(&key)
            .json(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 15, "quality": "1080p"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, t) =
            split(client.get(format!("{}/v1/tasks/{id}", first.url)).bearer_auth(&key).send().await.unwrap()).await;
        if t["status"] == "processing" && t["progress"].as_u64().unwrap_or(0) > 10 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = first.child.id().to_string();
    let stopped_at = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = first.child.wait().unwrap();
    assert!(status.success(), "vidgate exited with {status}");
    assert!(stopped_at.elapsed() < Duration::from_secs(8), "shutdown took {:?}", stopped_at.elapsed());
    drop(first);

    let second = start(dir.path(), db.as_deref(), &env);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, t) =
            split(client.get(format!("{}/v1/tasks/{id}", second.url)).bearer_auth(&key).send().await.unwrap()).await;
        if t["status"] == "completed" {
            break;
        }
        assert!(t["status"] != "failed", "{t}");
        assert!(tokio::time::Instant::now() < deadline, "the task was not resumed: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);
});

#[test]
fn keys_create_refuses_a_folder_without_a_database_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vidgate"))
        .args(["keys", "create", "--data-dir"])
        .arg(dir.path().join("typo"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no vidgate database") && stderr.contains("--init"), "{stderr}");
    assert_eq!(stderr.matches("no vidgate database").count(), 1, "the error is printed once: {stderr}");
    assert!(out.stdout.is_empty());
    assert!(!dir.path().join("typo").exists(), "no second database was made");
}

#[tokio::test]
async fn keys_create_prints_a_working_key_as_its_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vidgate"))
        .args(["keys", "create", "--init", "--credits", "12.5", "--name", "alice", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("sk-vg-") && !key.contains(' '), "{stdout}");
    let server = start(dir.path(), None, &[]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (s, b) = split(client.get(format!("{}/v1/credits", server.url)).bearer_auth(&key).send().await.unwrap()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["user"]["remaining_credits"], 12.5);
    drop(server);
}

both_backends!(an_upstream_task_survives_kill_9_without_a_second_submission, |backend| async move {
    let Some(db) = database(backend).await else { return };
    let sim = vidgate_sim::spawn(vidgate_sim::SimConfig { polls_to_finish: 12, ..Default::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = vidgate_sim::SimConfig::default();
    std::fs::write(dir.path().join("ak"), &d.kling_access_key).unwrap();
    std::fs::write(dir.path().join("sk"), &d.kling_secret_key).unwrap();
    let config = dir.path().join("vidgate.toml");
    std::fs::write(
        &config,
        format!(
            "upstream_poll_min_ms = 100\nupstream_poll_max_ms = 200\n\
             [providers.sim]\nkind = \"kling\"\nbase_url = \"{}/kling\"\n\
             access_key_file = \"{}\"\nsecret_key_file = \"{}\"\n\
             [[routes]]\nmodel = \"kling-v3-text-to-video\"\nprovider = \"sim\"\nupstream_model = \"kling-v3\"\n\
             cost_usd_per_second = {{ \"720p\" = 0.05, \"720p_sound\" = 0.05, \"1080p\" = 0.05, \"1080p_sound\" = 0.05 }}\n",
            sim.base_url,
            dir.path().join("ak").display(),
            dir.path().join("sk").display(),
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let env = [("VIDGATE_ALLOW_PRIVATE_URLS", "true")];
    let args = ["--config", config.to_str().unwrap()];
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let first = start_with(&data, db.as_deref(), &env, &args);
    let key = first.api_key.clone().unwrap();
    let (s, task) = split(
        client
            .post(format!("{}/v1/videos/generations", first.url))
            .bearer_auth(&key)
            .json(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 3}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    // Accepted upstream and being polled: now the process dies.
    let polled = crate::helpers::eventually(30, || async { sim.stats().polls >= 2 }).await;
    assert!(polled, "the task was never polled: {:?}", sim.stats());
    kill_9(first);

    let second = start_with(&data, db.as_deref(), &env, &args);
    let done = finished_after_restart(&client, &second, &key, &id, 60).await;
    assert_eq!(done["status"], "completed", "{done}");
    // The running attempt was taken over and polled on, not submitted again.
    assert_eq!(sim.stats().accepted, 1, "{:?}", sim.stats());
    let (_, attempts) = split(
        client.get(format!("{}/admin/tasks/{id}/attempts", second.url)).bearer_auth(ADMIN_KEY).send().await.unwrap(),
    )
    .await;
    assert_eq!(attempts["attempts"].as_array().unwrap().len(), 1, "{attempts}");
    assert_eq!(attempts["attempts"][0]["status"], "succeeded");
    drop(second);
    let url = db.unwrap_or_else(|| format!("sqlite://{}", data.join("vidgate.db").display()));
    assert_settled_once(&url, &id).await;
});

#[test]
fn webhooks_verify_accepts_a_genuine_signature_and_refuses_a_forged_one() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, r#"{"id":"task-unified-1-abcdefgh","status":"completed"}"#).unwrap();
    let secret = vidgate::webhooks::new_secret();
    let ts = vidgate::util::now_ms() / 1000;
    let sig = vidgate::webhooks::sign(&secret, "msg_1", ts, &std::fs::read_to_string(&body).unwrap()).unwrap();
    let run = |sig: &str| {
        Command::new(env!("CARGO_BIN_EXE_vidgate"))
            .args(["webhooks", "verify", "--secret", &secret, "--id", "msg_1", "--timestamp", &ts.to_string()])
            .args(["--signature", sig, "--body"])
            .arg(&body)
            .output()
            .unwrap()
    };
    let ok = run(&format!("v1,bm90LXRoaXM= {sig}"));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "valid");
    let forged = run("v1,AAAA");
    assert!(!forged.status.success());
    assert!(String::from_utf8_lossy(&forged.stderr).contains("does not match"));
}
