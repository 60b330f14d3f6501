//! Per-key limits: `max_concurrent`, `rpm` and budgets per day, month or in
//! total, exact under concurrency (one process, and two replicas on one
//! PostgreSQL database); refusals in EvoLink's shapes with nothing created or
//! held; `PATCH /admin/keys/{id}` as a real partial update; disabled accounts.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, fresh_pg_database};

fn t2v() -> Value {
    json!({"model": "kling-v3-text-to-video", "prompt": "limits", "duration": 3})
}

/// 16.2 credits: the price of `t2v()`.
const PRICE: f64 = 16.2;

/// An account with credits and a second key whose limits are `limits`.
async fn limited_key(app: &TestApp, credits: f64, limits: Value) -> (String, String, String) {
    let (account, _) = app.new_account(credits).await;
    let (s, k) = app.admin_post(&format!("/admin/accounts/{account}/keys"), &json!({"name": "limited"})).await;
    assert_eq!(s, 200, "{k}");
    let key_id = k["key"]["id"].as_str().unwrap().to_owned();
    let (s, v) = app.admin_patch(&format!("/admin/keys/{key_id}"), &limits).await;
    assert_eq!(s, 200, "{v}");
    (account, k["api_key"].as_str().unwrap().to_owned(), key_id)
}

/// Tasks still pending (these tests run without workers, so nothing starts).
async fn open_tasks(app: &TestApp, key: &str) -> usize {
    let (_, list) = app.get_with_key("/v1/tasks?limit=100&status=pending", key).await;
    list["data"].as_array().unwrap().len()
}

async fn balanced(app: &TestApp, account: &str) {
    let (grants, buckets) = app.state.store.ledger_check(&vidgate::ids::AccountId::from_raw(account)).await.unwrap();
    assert_eq!(grants, buckets, "the ledger does not balance");
}

fn count(results: &[(u16, Value, Option<String>)], status: u16) -> usize {
    results.iter().filter(|(s, _, _)| *s == status).count()
}

both_backends!(thirty_concurrent_creates_against_max_concurrent_five_admit_exactly_five, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (account, key, _) = limited_key(&app, 1000.0, json!({"max_concurrent": 5})).await;
    let results = app.burst(30, "/v1/videos/generations", &t2v(), &key).await;
    assert_eq!((count(&results, 200), count(&results, 429)), (5, 25), "{results:?}");
    for (s, body, retry) in results.iter().filter(|(s, _, _)| *s == 429) {
        assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{s} {body}");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert!(body["error"]["message"].as_str().unwrap().contains("max_concurrent = 5"), "{body}");
        let secs: u64 = retry.as_deref().expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&secs), "{secs}");
    }
    assert_eq!(open_tasks(&app, &key).await, 5);
    assert!((app.remaining(&key).await - (1000.0 - 5.0 * PRICE)).abs() < 1e-9, "only five holds");
    balanced(&app, &account).await;
    // A finished task frees its place.
    let (_, list) = app.get_with_key("/v1/tasks", &key).await;
    let first = list["data"][0]["id"].as_str().unwrap().to_owned();
    let (s, _) = app.post_with_key(&format!("/v1/tasks/{first}/cancel"), &json!({}), &key).await;
    assert_eq!(s, 200);
    let (s, b) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(s, 429);
    app.stop().await;
});

/// Two replicas sharing one PostgreSQL database hold the limit between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_holds_across_two_replicas_on_postgres() {
    let Some(url) = fresh_pg_database().await else { return };
    let same_db = |c: &mut vidgate::config::Config| {
        c.workers = 0;
        c.database_url = Some(url.clone());
    };
    let Some(a) = TestApp::spawn_with(Backend::Postgres, same_db).await else { return };
    let Some(b) = TestApp::spawn_with(Backend::Postgres, same_db).await else { return };
    let (account, key, _) = limited_key(&a, 1000.0, json!({"max_concurrent": 5})).await;
    let mut handles = Vec::new();
    for i in 0..30 {
        let app = if i % 2 == 0 { &a } else { &b };
        let req = app.client.post(app.url("/v1/videos/generations")).bearer_auth(&key).json(&t2v());
        handles.push(tokio::spawn(async move { req.send().await.unwrap().status().as_u16() }));
    }
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (5, 25), "{statuses:?}");
    assert_eq!(open_tasks(&b, &key).await, 5);
    balanced(&a, &account).await;
    a.stop().await;
    b.stop().await;
}

both_backends!(a_create_past_rpm_is_429_naming_the_limit_with_retry_after, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (account, key, _) = limited_key(&app, 1000.0, json!({"rpm": 3})).await;
    for _ in 0..3 {
        let (s, b) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
        assert_eq!(s, 200, "{b}");
    }
    let before = app.remaining(&key).await;
    let resp = app.client.post(app.url("/v1/videos/generations")).bearer_auth(&key).json(&t2v()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("rpm = 3"), "{body}");
    assert_eq!(app.remaining(&key).await, before, "a refused create holds nothing");
    assert_eq!(open_tasks(&app, &key).await, 3, "a refused create makes nothing");
    // Concurrent creates cannot slip past it either.
    let (_, key2, _) = limited_key(&app, 1000.0, json!({"rpm": 4})).await;
    let results = app.burst(20, "/v1/videos/generations", &t2v(), &key2).await;
    assert_eq!(count(&results, 200), 4, "{results:?}");
    balanced(&app, &account).await;
    app.stop().await;
});

// Creates that arrive together are held together when they all pass; the key's
// counters must then be what one create after another would have left.
both_backends!(a_burst_within_every_limit_is_admitted_whole_and_counted_exactly, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let budget = 567.0; // 35 creates' worth
    let limits = json!({"rpm": 30, "max_concurrent": 40, "budget_credits": 567, "budget_period": "day"});
    let (account, key, key_id) = limited_key(&app, 1000.0, limits).await;
    let results = app.burst(30, "/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(count(&results, 200), 30, "{results:?}");
    let (_, c) = app.get_with_key("/v1/credits", &key).await;
    let left = c["data"]["token"]["remaining_credits"].as_f64().unwrap();
    assert!((left - (budget - 30.0 * PRICE)).abs() < 1e-9, "the budget counted thirty: {c}");
    assert_eq!(open_tasks(&app, &key).await, 30);
    let (s, b) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(s, 429, "the rate window counted thirty: {b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("rpm = 30"), "{b}");
    // The open-task counter counted thirty too: max_concurrent at 30 refuses the next.
    let (s, _) = app.admin_patch(&format!("/admin/keys/{key_id}"), &json!({"rpm": null, "max_concurrent": 30})).await;
    assert_eq!(s, 200);
    let (s, b) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(s, 429, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("max_concurrent = 30"), "{b}");
    balanced(&app, &account).await;
    app.stop().await;
});

both_backends!(a_daily_budget_is_402_naming_the_budget_and_when_it_resets, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (_, key, _) = limited_key(&app, 1000.0, json!({"budget_credits": 40, "budget_period": "day"})).await;
    for _ in 0..2 {
        let (s, b) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(s, 402, "{b}");
    assert_eq!(b["error"]["code"], "insufficient_quota");
    assert_eq!(b["error"]["type"], "insufficient_quota");
    let message = b["error"]["message"].as_str().unwrap();
    let now = vidgate::util::now_ms();
    let tomorrow = vidgate::limits::format_utc(vidgate::limits::BudgetPeriod::Day.next_reset(now).unwrap());
    assert!(message.contains("daily budget of 40 credits"), "{message}");
    assert!(message.contains(&format!("resets at {tomorrow}")), "{message}");
    // What the key may still spend: what the budget leaves, not the account's balance.
    let (_, c) = app.get_with_key("/v1/credits", &key).await;
    assert_eq!(c["data"]["token"]["unlimited_credits"], false);
    assert!((c["data"]["token"]["remaining_credits"].as_f64().unwrap() - (40.0 - 2.0 * PRICE)).abs() < 1e-9, "{c}");
    assert!((c["data"]["user"]["remaining_credits"].as_f64().unwrap() - (1000.0 - 2.0 * PRICE)).abs() < 1e-9);
    // A key without a budget is unlimited, and sees the account's balance.
    let (_, c) = app.get_with_key("/v1/credits", &app.api_key).await;
    assert_eq!(c["data"]["token"]["unlimited_credits"], true);
    app.stop().await;
});

both_backends!(concurrent_creates_cannot_overspend_a_budget, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (account, key, _) = limited_key(&app, 1000.0, json!({"budget_credits": 50, "budget_period": "month"})).await;
    let results = app.burst(20, "/v1/videos/generations", &t2v(), &key).await;
    assert_eq!((count(&results, 200), count(&results, 402)), (3, 17), "{results:?}");
    assert!((app.remaining(&key).await - (1000.0 - 3.0 * PRICE)).abs() < 1e-9, "the account paid for three");
    let (_, c) = app.get_with_key("/v1/credits", &key).await;
    assert!((c["data"]["token"]["remaining_credits"].as_f64().unwrap() - (50.0 - 3.0 * PRICE)).abs() < 1e-9, "{c}");
    balanced(&app, &account).await;
    app.stop().await;
});

both_backends!(a_released_hold_gives_its_budget_back, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (_, key, _) = limited_key(&app, 1000.0, json!({"budget_credits": 20, "budget_period": "day"})).await;
    let (s, t) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(s, 200, "{t}");
    let (s, _) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(s, 402);
    let id = t["id"].as_str().unwrap();
    let (s, _) = app.post_with_key(&format!("/v1/tasks/{id}/cancel"), &json!({}), &key).await;
    assert_eq!(s, 200);
    let (s, b) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(s, 200, "the release gave the budget back: {b}");
    app.stop().await;
});

both_backends!(a_budget_set_later_counts_what_the_key_already_spent_this_period, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (_, key, key_id) = limited_key(&app, 1000.0, json!({})).await;
    for _ in 0..2 {
        let (s, _) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
        assert_eq!(s, 200);
    }
    let (s, v) =
        app.admin_patch(&format!("/admin/keys/{key_id}"), &json!({"budget_credits": 40, "budget_period": "day"})).await;
    assert_eq!(s, 200, "{v}");
    assert!((v["budget_used_credits"].as_f64().unwrap() - 2.0 * PRICE).abs() < 1e-9, "{v}");
    let (s, _) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(s, 402, "32.4 were already held today");
    app.stop().await;
});

both_backends!(patch_changes_only_the_fields_it_names_and_null_clears, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (_, _, key_id) =
        limited_key(&app, 100.0, json!({"rpm": 10, "allowed_models": ["kling-v3-text-to-video"]})).await;
    let path = format!("/admin/keys/{key_id}");
    let (s, v) = app.admin_patch(&path, &json!({"max_concurrent": 2})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["rpm"].as_i64(), v["max_concurrent"].as_i64()), (Some(10), Some(2)), "{v}");
    assert_eq!(v["allowed_models"], json!(["kling-v3-text-to-video"]));
    let (_, v) = app.admin_patch(&path, &json!({"rpm": null, "credit_cap": 30})).await;
    assert_eq!(v["rpm"], Value::Null);
    assert_eq!(v["max_concurrent"], 2);
    assert_eq!((v["budget_credits"].as_f64(), v["budget_period"].as_str()), (Some(30.0), Some("total")));
    assert_eq!(v["credit_cap"].as_f64(), Some(30.0), "the old name still reads");
    let (_, v) = app.admin_patch(&path, &json!({"budget_period": "day"})).await;
    assert_eq!((v["budget_credits"].as_f64(), v["budget_period"].as_str()), (Some(30.0), Some("day")));
    assert_eq!(v["credit_cap"], Value::Null);
    let (_, v) = app.admin_patch(&path, &json!({"allowed_models": null, "budget_credits": null})).await;
    assert_eq!((v["allowed_models"].clone(), v["budget_credits"].clone()), (Value::Null, Value::Null));
    // Bad values are refused naming the field, and change nothing.
    for (body, param) in [
        (json!({"rpm": 0}), "rpm"),
        (json!({"max_concurrent": "many"}), "max_concurrent"),
        (json!({"budget_credits": 1.23456}), "budget_credits"),
        (json!({"budget_period": "week", "budget_credits": 5}), "budget_period"),
        (json!({"allowed_models": ["no-such-model"]}), "allowed_models[0]"),
        (json!({"credit_cap": 5, "budget_credits": 5}), "credit_cap"),
    ] {
        let (s, b) = app.admin_patch(&path, &body).await;
        assert_eq!((s, b["error"]["param"].as_str()), (400, Some(param)), "{body} -> {b}");
    }
    let (_, v) = app.admin_patch(&path, &json!({})).await;
    assert_eq!(v["max_concurrent"], 2);
    let (s, _) = app.admin_patch("/admin/keys/key-nope", &json!({"rpm": 1})).await;
    assert_eq!(s, 404);
    app.stop().await;
});

both_backends!(a_disabled_accounts_keys_stop_working_until_it_is_enabled, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (account, key) = app.new_account(100.0).await;
    let (s, a) = app.admin_post(&format!("/admin/accounts/{account}/disable"), &json!({})).await;
    assert_eq!((s, a["disabled"].as_bool()), (200, Some(true)), "{a}");
    let (s, b) = app.get_with_key("/v1/credits", &key).await;
    assert_eq!(s, 401);
    assert!(b["error"]["message"].as_str().unwrap().contains("disabled"), "{b}");
    let (s, _) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(s, 401);
    let (s, a) = app.admin_post(&format!("/admin/accounts/{account}/enable"), &json!({})).await;
    assert_eq!((s, a["disabled"].as_bool()), (200, Some(false)));
    let (s, _) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
    assert_eq!(s, 200);
    let (s, _) = app.admin_post("/admin/accounts/acct-nope/disable", &json!({})).await;
    assert_eq!(s, 404);
    app.stop().await;
});

/// The schema before this change, then the migration: a credit cap becomes a
/// total budget and each account's first key manages keys.
async fn migrate_old_database(url: &str) {
    use sqlx::{Connection, Executor};
    let (mut conn, files): (sqlx::AnyConnection, [&str; 4]) = if url.starts_with("sqlite") {
        sqlx::any::install_default_drivers();
        (
            sqlx::AnyConnection::connect(&format!("{url}?mode=rwc")).await.unwrap(),
            [
                include_str!("../../migrations/sqlite/0001_init.sql"),
                include_str!("../../migrations/sqlite/0002_webhooks.sql"),
                include_str!("../../migrations/sqlite/0003_routing.sql"),
                include_str!("../../migrations/sqlite/0004_open_tasks_by_key.sql"),
            ],
        )
    } else {
        sqlx::any::install_default_drivers();
        (
            sqlx::AnyConnection::connect(url).await.unwrap(),
            [
                include_str!("../../migrations/postgres/0001_init.sql"),
                include_str!("../../migrations/postgres/0002_webhooks.sql"),
                include_str!("../../migrations/postgres/0003_routing.sql"),
                include_str!("../../migrations/postgres/0004_open_tasks_by_key.sql"),
            ],
        )
    };
    conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)").await.unwrap();
    for (name, sql) in ["0001_init", "0002_webhooks", "0003_routing", "0004_open_tasks_by_key"].iter().zip(files) {
        conn.execute(sql).await.unwrap();
        conn.execute(format!("INSERT INTO schema_migrations VALUES ('{name}', 0)").as_str()).await.unwrap();
    }
    conn.execute(
        "INSERT INTO accounts (id, name, balance, held, used, created_at) VALUES ('acct-old', 'old', 0, 0, 0, 1); \
         INSERT INTO api_keys (id, account_id, key_hash, prefix, name, credit_cap, spent, allowed_models, created_at) \
         VALUES ('key-first', 'acct-old', 'h1', 'p', 'default', NULL, 0, NULL, 1), \
         ('key-capped', 'acct-old', 'h2', 'p', 'capped', 300000, 120000, NULL, 2); \
         INSERT INTO tasks (id, account_id, key_id, model, status, request, credits_reserved, video_duration, \
         estimated_time, deadline_at, created_at, created_us, updated_at) VALUES \
         ('task-unified-1-aaaaaaaa', 'acct-old', 'key-capped', 'm', 'pending', '{}', 1, 5, 60, 9, 1, 1, 1), \
         ('task-unified-1-bbbbbbbb', 'acct-old', 'key-capped', 'm', 'processing', '{}', 1, 5, 60, 9, 1, 2, 1), \
         ('task-unified-1-cccccccc', 'acct-old', 'key-capped', 'm', 'completed', '{}', 1, 5, 60, 9, 1, 3, 1)",
    )
    .await
    .unwrap();
    conn.close().await.unwrap();
    let store = vidgate::store::Store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    let capped = store.get_key(&vidgate::ids::KeyId::from_raw("key-capped")).await.unwrap().unwrap();
    assert_eq!(
        capped.budget(),
        Some(vidgate::limits::Budget { credits: 300_000, period: vidgate::limits::BudgetPeriod::Total })
    );
    assert_eq!(capped.spent, 120_000, "what it spent still counts against the budget");
    assert!(!capped.manages_keys());
    let first = store.get_key(&vidgate::ids::KeyId::from_raw("key-first")).await.unwrap().unwrap();
    assert_eq!(first.budget(), None);
    assert!(first.manages_keys(), "the first key of an account manages its keys");
    store.close().await;
    // The open-task counter that `max_concurrent` reads starts from the open tasks.
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let open: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, open_tasks FROM api_keys ORDER BY id").fetch_all(&mut conn).await.unwrap();
    assert_eq!(open, [("key-capped".to_owned(), 2), ("key-first".to_owned(), 0)]);
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_credit_cap_becomes_a_total_budget_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    migrate_old_database(&format!("sqlite://{}", dir.path().join("old.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_credit_cap_becomes_a_total_budget_on_postgres() {
    let Some(url) = fresh_pg_database().await else { return };
    migrate_old_database(&url).await;
}

// Creates lock the account, then the key; settlements (a cancel here) take the
// same order, so racing them never deadlocks on PostgreSQL.
both_backends!(creates_racing_cancels_of_the_same_key_all_go_through, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (account, key, _) =
        limited_key(&app, 10_000.0, json!({"max_concurrent": 1000, "budget_credits": 9000, "budget_period": "day"}))
            .await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let (s, t) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
        assert_eq!(s, 200, "{t}");
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    let mut handles = Vec::new();
    for id in ids {
        let cancel = app.client.post(app.url(&format!("/v1/tasks/{id}/cancel"))).bearer_auth(&key).json(&json!({}));
        let create = app.client.post(app.url("/v1/videos/generations")).bearer_auth(&key).json(&t2v());
        handles.push(tokio::spawn(async move { cancel.send().await.unwrap().status().as_u16() }));
        handles.push(tokio::spawn(async move { create.send().await.unwrap().status().as_u16() }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), 200);
    }
    assert_eq!(open_tasks(&app, &key).await, 20);
    let (_, c) = app.get_with_key("/v1/credits", &key).await;
    assert!((c["data"]["token"]["remaining_credits"].as_f64().unwrap() - (9000.0 - 20.0 * PRICE)).abs() < 1e-9, "{c}");
    balanced(&app, &account).await;
    app.stop().await;
});
