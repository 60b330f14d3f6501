//! What the operator console reads: the audit log of every action that moves
//! money or access, accounts by search, tasks across accounts by filter with
//! their callbacks, the margin by day, provider latency, and the console page
//! itself with its Content-Security-Policy.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(every_action_that_moves_money_or_access_is_audited_with_before_and_after, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (account, _, key_id) = app.new_account_with_key_id(10.0).await;
    let steps: Vec<(String, Value)> = vec![
        (format!("/admin/accounts/{account}/credits"), json!({"credits": 5, "note": "goodwill"})),
        (format!("/admin/accounts/{account}/disable"), json!({})),
        (format!("/admin/accounts/{account}/enable"), json!({})),
        (format!("/admin/accounts/{account}/keys"), json!({"name": "second", "rpm": 5})),
        (format!("/admin/keys/{key_id}/revoke"), json!({})),
        ("/admin/codes".to_owned(), json!({"value": 3, "count": 2})),
    ];
    for (path, body) in &steps {
        let (s, b) = app.admin_post(path, body).await;
        assert_eq!(s, 200, "{path}: {b}");
    }
    let (s, _) = app.admin_patch(&format!("/admin/keys/{key_id}"), &json!({"max_concurrent": 2})).await;
    assert_eq!(s, 200);
    let (s, page) = app.admin_get("/admin/audit?limit=100").await;
    assert_eq!(s, 200, "{page}");
    let rows = page["data"].as_array().unwrap();
    let find = |action: &str| rows.iter().find(|r| r["action"] == action).cloned().unwrap_or(Value::Null);
    let grant = find("account.grant");
    assert_eq!(
        (grant["before"]["balance"].as_i64(), grant["after"]["balance"].as_i64()),
        (Some(100_000), Some(150_000))
    );
    assert_eq!(grant["after"]["note"], "goodwill");
    assert_eq!((grant["actor"].as_str(), grant["source"].as_str()), (Some("admin"), Some("127.0.0.1")));
    assert_eq!(grant["target"], account.as_str());
    assert_eq!(find("account.disable")["after"]["disabled"], true);
    assert_eq!(find("account.enable")["before"]["disabled"], true);
    assert_eq!(find("key.create")["after"]["rpm"], 5);
    let revoke = find("key.revoke");
    assert_eq!(
        (revoke["before"]["revoked"].as_bool(), revoke["after"]["revoked"].as_bool()),
        (Some(false), Some(true))
    );
    let limits = find("key.limits");
    assert_eq!(
        (limits["before"]["max_concurrent"].clone(), limits["after"]["max_concurrent"].clone()),
        (Value::Null, json!(2))
    );
    assert_eq!(find("codes.create")["after"]["count"], 2);
    assert_eq!(find("account.create")["target"], account.as_str());
    // Newest first, filtered by account, paged.
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]));
    let (_, mine) = app.admin_get(&format!("/admin/audit?account={account}&limit=2")).await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 2);
    let cursor = mine["next_cursor"].as_str().unwrap();
    let (_, next) = app.admin_get(&format!("/admin/audit?account={account}&limit=100&cursor={cursor}")).await;
    assert!(next["data"].as_array().unwrap().iter().all(|r| r["account_id"] == account.as_str()));
    assert_eq!(next["data"].as_array().unwrap().len(), 5, "7 rows about the account: {next}");
    app.stop().await;
});

both_backends!(the_operator_lists_tasks_across_accounts_by_filter_with_their_callbacks, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (a, key_a) = app.new_account(100.0).await;
    let (_, key_b) = app.new_account(100.0).await;
    let t2v = json!({"model": "kling-v3-text-to-video", "prompt": "<img src=x onerror=alert(1)>", "duration": 3});
    let (_, ta) = app.post_with_key("/v1/videos/generations", &t2v, &key_a).await;
    let (_, tb) = app.post_with_key("/v1/videos/generations", &t2v, &key_b).await;
    let id_b = tb["id"].as_str().unwrap();
    let (s, _) = app.post_with_key(&format!("/v1/tasks/{id_b}/cancel"), &json!({}), &key_b).await;
    assert_eq!(s, 200);
    let (s, all) = app.admin_get("/admin/tasks").await;
    assert_eq!(s, 200, "{all}");
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    assert_eq!(all["data"][0]["id"], id_b, "newest first");
    assert_eq!(all["data"][0]["prompt"], "<img src=x onerror=alert(1)>");
    let (_, failed) = app.admin_get("/admin/tasks?status=failed").await;
    assert_eq!(failed["data"].as_array().unwrap().len(), 1);
    assert_eq!(failed["data"][0]["error"]["code"], "request_cancelled");
    let (_, of_a) = app.admin_get(&format!("/admin/tasks?account={a}&model=kling-v3-text-to-video")).await;
    assert_eq!(of_a["data"][0]["id"], ta["id"]);
    assert_eq!(of_a["data"].as_array().unwrap().len(), 1);
    let (_, none) = app.admin_get("/admin/tasks?provider=fal").await;
    assert_eq!(none["data"], json!([]));
    let (_, page) = app.admin_get("/admin/tasks?limit=1").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app.admin_get(&format!("/admin/tasks?limit=1&cursor={cursor}")).await;
    assert_eq!(rest["data"][0]["id"], ta["id"]);
    assert_eq!(rest["next_cursor"], Value::Null);
    let (s, cb) = app.admin_get(&format!("/admin/tasks/{id_b}/callbacks")).await;
    assert_eq!((s, cb["data"].clone()), (200, json!([])));
    let (s, _) = app.admin_get("/admin/tasks/task-unified-1-aaaaaaaa/callbacks").await;
    assert_eq!(s, 404);
    let (s, b) = app.admin_get("/admin/tasks?status=lost").await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("status")));
    app.stop().await;
});

both_backends!(the_margin_report_has_a_line_per_day, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let t2v = json!({"model": "kling-v3-text-to-video", "prompt": "margin", "duration": 3});
    let (_, t) = app.create(&t2v).await;
    let id = t["id"].as_str().unwrap();
    app.wait_task(id, 120, |t| t["status"] == "completed").await;
    let (s, r) = app.admin_get("/admin/reports/margin").await;
    assert_eq!(s, 200, "{r}");
    let today = vidgate::limits::format_utc_date(vidgate::util::now_ms());
    assert_eq!(r["days"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["days"][0]["date"], today.as_str());
    assert_eq!(r["days"][0]["credits_charged"], 162_000);
    assert_eq!(r["days"][0]["revenue_usd"], 0.225);
    let (_, earlier) = app.admin_get(&format!("/admin/reports/margin?to={today}")).await;
    assert_eq!(earlier["days"], json!([]));
    let (s, b) = app.admin_get("/admin/reports/margin?from=tomorrow").await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("from")));
    app.stop().await;
});

both_backends!(accounts_are_found_by_id_or_any_part_of_their_name, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (s, made) = app.admin_post("/admin/accounts", &json!({"name": "Acme_Studio 100%"})).await;
    assert_eq!(s, 200);
    let id = made["account"]["id"].as_str().unwrap();
    let names =
        |v: &Value| v.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    for q in ["acme", "STUDIO", "_studio", "100%25", id] {
        let (s, found) = app.admin_get(&format!("/admin/accounts?search={q}")).await;
        assert_eq!(s, 200);
        assert_eq!(names(&found), vec![id.to_owned()], "{q}");
    }
    // Wildcards are literal.
    let (_, none) = app.admin_get("/admin/accounts?search=a%25z").await;
    assert_eq!(names(&none), Vec::<String>::new());
    let (_, all) = app.admin_get("/admin/accounts?limit=1").await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    app.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_one_page_with_its_own_files_under_a_strict_policy() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.workers = 0).await else { return };
    for path in
        ["/admin", "/admin/", "/assets/console.js", "/assets/console.css", "/favicon.ico", "/assets/favicon.svg"]
    {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        let body = resp.text().await.unwrap();
        if path.starts_with("/admin") {
            assert!(
                !body.contains("<script>") && body.contains("<script src=\"/assets/console.js\""),
                "no inline script"
            );
            assert!(!body.contains("<style") && !body.contains("style="), "no inline style");
            assert!(!body.contains("http://") && !body.contains("https://"), "nothing from the internet");
        }
    }
    let resp = app.client.get(app.url("/assets/nope.js")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // The page holds no data: reading it needs no key, everything else does.
    let (s, _) = app.get_with_key("/admin/accounts", "").await;
    assert_eq!(s, 401);
    app.stop().await;
}
