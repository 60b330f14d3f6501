//! `vidgate admin ...` against a real server over HTTP: accounts, keys and their
//! limits, codes, usage and the audit log; a wrong or missing admin key fails
//! with a clear message and a non-zero exit.

use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::{ADMIN_KEY, Backend, TestApp};

async fn admin(app: &TestApp, key: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidgate"));
    cmd.arg("admin").args(args).env("VIDGATE_URL", &app.address).env("RUST_LOG", "off").env_remove("VIDGATE_ADMIN_KEY");
    if let Some(k) = key {
        cmd.env("VIDGATE_ADMIN_KEY", k);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_manage_a_running_server_over_http() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.workers = 0).await else { return };
    let k = Some(ADMIN_KEY);

    let out = admin(&app, k, &["accounts", "create", "--name", "cli shop", "--credits", "12.5"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let key = stdout(&out).lines().last().unwrap().to_owned();
    assert!(key.starts_with("sk-vg-"), "{}", text(&out));
    assert_eq!(app.remaining(&key).await, 12.5);
    let (_, me) = app.get_with_key("/v1/keys", &key).await;
    let account = me["data"][0]["account_id"].as_str().unwrap().to_owned();
    let key_id = me["data"][0]["id"].as_str().unwrap().to_owned();

    let out = admin(&app, k, &["accounts", "grant", &account, "-2.5", "--note", "refund"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(app.remaining(&key).await, 10.0);
    let out = admin(&app, k, &["accounts", "list", "--search", "CLI"]).await;
    assert!(stdout(&out).contains("cli shop") && stdout(&out).contains(&account), "{}", text(&out));

    let out =
        admin(&app, k, &["keys", "update", &key_id, "--rpm", "2", "--budget", "5", "--budget-period", "day"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = admin(&app, k, &["--json", "keys", "list", &account]).await;
    let keys: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((keys[0]["rpm"].as_i64(), keys[0]["budget_period"].as_str()), (Some(2), Some("day")));
    let out = admin(&app, k, &["keys", "update", &key_id, "--rpm", "none"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let (_, v) = app.get_with_key("/v1/keys", &key).await;
    assert_eq!((v["data"][0]["rpm"].clone(), v["data"][0]["budget_credits"].as_f64()), (Value::Null, Some(5.0)));
    let out = admin(&app, k, &["keys", "create", &account, "--name", "ci", "--max-concurrent", "1"]).await;
    let second = stdout(&out).lines().last().unwrap().to_owned();
    assert!(second.starts_with("sk-vg-"), "{}", text(&out));

    let out = admin(&app, k, &["codes", "create", "--value", "3", "--count", "2", "--expires", "2099-01-01"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let codes: Vec<String> = stdout(&out).lines().filter(|l| l.starts_with("VG-")).map(str::to_owned).collect();
    assert_eq!(codes.len(), 2, "{}", text(&out));
    let (s, r) = app.post_with_key("/v1/credits/redeem", &serde_json::json!({"code": codes[0]}), &key).await;
    assert_eq!(s, 200, "{r}");
    let out = admin(&app, k, &["codes", "list"]).await;
    assert!(stdout(&out).lines().nth(1).unwrap().contains("3"), "{}", text(&out));

    let out = admin(&app, k, &["usage", "--group-by", "account", "--csv"]).await;
    assert_eq!(stdout(&out).lines().next(), Some("account,tasks,credits_charged,video_seconds"), "{}", text(&out));
    let out = admin(&app, k, &["audit", "--account", &account]).await;
    for action in ["account.create", "account.grant", "key.limits", "key.create", "code.redeem"] {
        assert!(stdout(&out).contains(action), "{action}: {}", text(&out));
    }
    let out = admin(&app, k, &["accounts", "disable", &account]).await;
    assert!(out.status.success(), "{}", text(&out));
    let (s, _) = app.get_with_key("/v1/credits", &key).await;
    assert_eq!(s, 401);

    // Refusals: the server's message and field, a non-zero exit.
    let out = admin(&app, k, &["keys", "update", &key_id, "--rpm", "0"]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("(field: rpm)"), "{}", text(&out));
    let out = admin(&app, Some("sk-wrong"), &["accounts", "list"]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("API key"), "{}", text(&out));
    let out = admin(&app, None, &["accounts", "list"]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("VIDGATE_ADMIN_KEY"), "{}", text(&out));
    app.stop().await;
}
