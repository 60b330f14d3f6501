//! Top-up codes and sign-up: a batch of codes (kept only as hashes) is redeemed
//! exactly as often as it allows, even when every redemption races; unknown,
//! expired and spent codes are told apart; sign-up with a code opens an
//! account, and attempts are limited per client address (as a trusted proxy
//! reports it) across replicas.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, eventually, fresh_pg_database};

async fn batch(app: &TestApp, body: Value) -> (Value, Vec<String>) {
    let (s, b) = app.admin_post("/admin/codes", &body).await;
    assert_eq!(s, 200, "{b}");
    let codes = b["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    (b["batch"].clone(), codes)
}

async fn redeem(app: &TestApp, key: &str, code: &str) -> (u16, Value) {
    app.post_with_key("/v1/credits/redeem", &json!({ "code": code }), key).await
}

both_backends!(a_code_is_redeemed_exactly_as_many_times_as_it_allows_when_all_race, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (b, codes) = batch(&app, json!({"value": 12.5, "count": 2, "uses_per_code": 5, "note": "launch"})).await;
    assert_eq!((b["value"].as_i64(), b["redeemed"].as_i64()), (Some(125_000), Some(0)));
    assert_eq!(codes.len(), 2);
    let mut accounts = Vec::new();
    for _ in 0..12 {
        accounts.push(app.new_account(0.0).await);
    }
    let mut handles = Vec::new();
    for (_, key) in &accounts {
        let req = app.client.post(app.url("/v1/credits/redeem")).bearer_auth(key).json(&json!({"code": codes[0]}));
        handles.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }));
    }
    let mut ok = 0;
    for h in handles {
        let (s, body) = h.await.unwrap();
        match s {
            200 => {
                ok += 1;
                assert_eq!((body["amount"].as_i64(), body["balance"].as_i64()), (Some(125_000), Some(125_000)));
            }
            409 => assert_eq!(body["error"]["code"], "code_used_up", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 5);
    let mut paid = 0;
    for (account, key) in &accounts {
        let r = app.remaining(key).await;
        assert!(r == 0.0 || r == 12.5, "{r}");
        if r == 12.5 {
            paid += 1;
        }
        let (grants, buckets) =
            app.state.store.ledger_check(&vidgate::ids::AccountId::from_raw(account)).await.unwrap();
        assert_eq!(grants, buckets);
    }
    assert_eq!(paid, 5);
    // The other code of the batch is untouched; an account redeems a code once.
    let (_, key) = &accounts[0];
    let (s, _) = redeem(&app, key, &codes[1].to_lowercase().replace('-', " ")).await;
    assert_eq!(s, 200, "case, spaces and dashes do not matter");
    let (s, b2) = redeem(&app, key, &codes[1]).await;
    assert_eq!((s, b2["error"]["code"].as_str()), (409, Some("code_used_up")), "{b2}");
    assert!(b2["error"]["message"].as_str().unwrap().contains("already redeemed"));
    let (_, list) = app.admin_get("/admin/codes").await;
    assert_eq!(list["data"][0]["redeemed"], 6);
    let (_, ledger) = app.get_with_key("/v1/credits/ledger", key).await;
    assert_eq!(ledger["data"][0]["kind"], "grant");
    // Only hashes are stored: the table holds no code, and each hash is the code's.
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&app.state.config.effective_database_url()).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT code_hash, prefix FROM topup_codes").fetch_all(&mut db).await.unwrap();
    assert_eq!(rows.len(), 2);
    for code in &codes {
        let normal: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        assert!(
            rows.iter()
                .any(|(h, p)| *h == vidgate::util::sha256_hex(normal.as_bytes()) && code.starts_with(p.as_str()))
        );
        assert!(!rows.iter().any(|(h, p)| h.contains(&normal[2..]) || p.contains(&normal[6..])), "a code in clear");
    }
    app.stop().await;
});

both_backends!(unknown_expired_and_spent_codes_are_told_apart, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (_, key) = app.new_account(0.0).await;
    let (s, b) = redeem(&app, &key, "VG-AAAA-BBBB-CCCC-DDDD").await;
    assert_eq!((s, b["error"]["code"].as_str(), b["error"]["param"].as_str()), (404, Some("not_found"), Some("code")));
    let (s, b) = redeem(&app, &key, "  ").await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("code")));
    // A code works until its expiry, then is 410 even with uses left.
    let soon = vidgate::util::now_ms() / 1000 + 5;
    let (_, expiring) = batch(&app, json!({"value": 1, "expires_at": soon, "uses_per_code": 2})).await;
    let (s, b) = redeem(&app, &key, &expiring[0]).await;
    assert_eq!(s, 200, "{b}");
    let expired = eventually(30, || async { redeem(&app, &key, &expiring[0]).await.0 == 410 }).await;
    assert!(expired, "the code never expired");
    let (_, other) = app.new_account(0.0).await;
    let (s, b) = redeem(&app, &other, &expiring[0]).await;
    assert_eq!((s, b["error"]["code"].as_str()), (410, Some("code_expired")), "{b}");
    // A code of one use serves one account.
    let (_, single) = batch(&app, json!({"value": 1})).await;
    let (s, _) = redeem(&app, &key, &single[0]).await;
    assert_eq!(s, 200);
    let (s, b) = redeem(&app, &other, &single[0]).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("code_used_up")), "one use only: {b}");
    for (body, param) in [
        (json!({"value": 0}), "value"),
        (json!({"value": 1, "count": 1001}), "count"),
        (json!({"value": 1, "uses_per_code": 0}), "uses_per_code"),
        (json!({"value": 1, "expires_at": 1}), "expires_at"),
        (json!({"value": "1.00001"}), "value"),
    ] {
        let (s, b) = app.admin_post("/admin/codes", &body).await;
        assert_eq!((s, b["error"]["param"].as_str()), (400, Some(param)), "{body}: {b}");
    }
    app.stop().await;
});

both_backends!(sign_up_with_a_code_opens_an_account_and_is_limited_per_client_address, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.workers = 0;
        c.signup = vidgate::config::SignupMode::Code;
        c.signup_per_hour = 3;
        c.signup_credits = vidgate_api::credits::Credits::from_units(50_000);
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
    else {
        return;
    };
    let (_, codes) = batch(&app, json!({"value": 10, "count": 3})).await;
    let signup = |from: &'static str, code: String| {
        let req = app
            .client
            .post(app.url("/v1/signup"))
            .header("x-forwarded-for", format!("6.6.6.6, {from}"))
            .json(&json!({"code": code, "name": "<b>new</b>"}));
        async move {
            let resp = req.send().await.unwrap();
            let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap(), retry)
        }
    };
    let (s, b, _) = signup("198.51.100.1", codes[0].clone()).await;
    assert_eq!(s, 200, "{b}");
    let key = b["api_key"].as_str().unwrap();
    assert_eq!(b["balance"], 150_000, "sign-up credits and the code's value");
    assert_eq!(b["key"]["manage_keys"], true);
    assert_eq!(app.remaining(key).await, 15.0);
    let (s, _) = app.post_with_key("/v1/keys", &json!({}), key).await;
    assert_eq!(s, 200, "the new account's key manages its keys");
    let (s, b, _) = signup("198.51.100.1", "VG-NOPE-NOPE-NOPE-NOPE".to_owned()).await;
    assert_eq!(s, 404, "{b}");
    let (s, _, _) = signup("198.51.100.1", codes[0].clone()).await;
    assert_eq!(s, 409, "a spent code opens nothing");
    // The fourth attempt of the hour from that address is refused, even with a good code.
    let (s, b, retry) = signup("198.51.100.1", codes[1].clone()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")), "{b}");
    assert!(retry.unwrap().parse::<u64>().unwrap() <= 3600);
    // Another client behind the same proxy is counted on its own.
    let (s, b, _) = signup("198.51.100.2", codes[1].clone()).await;
    assert_eq!(s, 200, "{b}");
    // The audit log has the sign-ups with their client address.
    let (_, audit) = app.admin_get("/admin/audit").await;
    let signups: Vec<&Value> = audit["data"].as_array().unwrap().iter().filter(|e| e["actor"] == "signup").collect();
    assert!(signups.iter().any(|e| e["source"] == "198.51.100.2" && e["action"] == "account.create"), "{audit}");
    app.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_is_closed_by_default() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.workers = 0).await else { return };
    let (_, codes) = batch(&app, json!({"value": 10})).await;
    let (s, b) = app.post_with_key("/v1/signup", &json!({"code": codes[0]}), "").await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("permission_denied")), "{b}");
    app.stop().await;
}

/// Two replicas on one PostgreSQL database share one count per address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_up_limit_holds_across_replicas() {
    let Some(url) = fresh_pg_database().await else { return };
    let config = |c: &mut vidgate::config::Config| {
        c.workers = 0;
        c.database_url = Some(url.clone());
        c.signup = vidgate::config::SignupMode::Code;
        c.signup_per_hour = 4;
    };
    let Some(a) = TestApp::spawn_with(Backend::Postgres, config).await else { return };
    let Some(b) = TestApp::spawn_with(Backend::Postgres, config).await else { return };
    let mut handles = Vec::new();
    for i in 0..12 {
        let app = if i % 2 == 0 { &a } else { &b };
        let req = app.client.post(app.url("/v1/signup")).json(&json!({"code": "VG-NONE"}));
        handles.push(tokio::spawn(async move { req.send().await.unwrap().status().as_u16() }));
    }
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 4, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 8, "{statuses:?}");
    a.stop().await;
    b.stop().await;
}
