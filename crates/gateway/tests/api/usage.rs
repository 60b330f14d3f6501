//! Usage history and the ledger, for an account and for the operator, in JSON
//! and CSV: every hold, charge, release and grant is there, newest first, and
//! the sums agree with the ledger and the account's buckets to the unit.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::TestApp;

fn t2v(duration: u32) -> Value {
    json!({"model": "kling-v3-text-to-video", "prompt": "usage", "duration": duration})
}

/// Every ledger entry of an account, following the cursors.
async fn whole_ledger(app: &TestApp, key: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/credits/ledger?limit=3&cursor={c}"),
            None => "/v1/credits/ledger?limit=3".to_owned(),
        };
        let (s, page) = app.get_with_key(&path, key).await;
        assert_eq!(s, 200, "{page}");
        entries.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return entries,
        }
    }
}

fn sum_kind(entries: &[Value], kind: &str) -> i64 {
    entries.iter().filter(|e| e["kind"] == kind).map(|e| e["amount"].as_i64().unwrap()).sum()
}

async fn get_csv(app: &TestApp, path: &str, key: &str) -> (u16, String, String) {
    let resp = app.client.get(app.url(path)).bearer_auth(key).header("accept", "text/csv").send().await.unwrap();
    let status = resp.status().as_u16();
    let ty = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ty, resp.text().await.unwrap())
}

both_backends!(usage_and_the_ledger_agree_with_the_account_to_the_unit, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let (account, key, key_id) = app.new_account_with_key_id(200.0).await;
    let (s, _) = app.admin_post(&format!("/admin/accounts/{account}/credits"), &json!({"credits": "1.2345"})).await;
    assert_eq!(s, 200);
    // Two tasks complete, one is cancelled (a release).
    let mut done = Vec::new();
    for d in [3, 4] {
        let (s, t) = app.post_with_key("/v1/videos/generations", &t2v(d), &key).await;
        assert_eq!(s, 200, "{t}");
        done.push(t["id"].as_str().unwrap().to_owned());
    }
    let (s, c) = app.post_with_key("/v1/videos/generations", &t2v(5), &key).await;
    assert_eq!(s, 200);
    let cancelled = c["id"].as_str().unwrap();
    let (s, _) = app.post_with_key(&format!("/v1/tasks/{cancelled}/cancel"), &json!({}), &key).await;
    assert_eq!(s, 200);
    for id in &done {
        let t = app.wait_task_with_key(id, &key, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
        assert_eq!(t["status"], "completed", "{t}");
    }

    let ledger = whole_ledger(&app, &key).await;
    let ids: Vec<i64> = ledger.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(ledger.iter().filter(|e| e["kind"] == "hold").count(), 3);
    assert_eq!(ledger.iter().filter(|e| e["kind"] == "charge").count(), 2);
    assert_eq!(ledger.iter().filter(|e| e["kind"] == "release").count(), 1);
    assert_eq!(sum_kind(&ledger, "grant"), 2_000_000 + 12_345);
    assert_eq!(sum_kind(&ledger, "charge"), 162_000 + 216_000);
    assert_eq!(sum_kind(&ledger, "release"), 270_000);
    let (_, acct) = app.admin_get(&format!("/admin/accounts/{account}")).await;
    let used = (acct["used_credits"].as_f64().unwrap() * 10_000.0).round() as i64;
    let remaining = (acct["remaining_credits"].as_f64().unwrap() * 10_000.0).round() as i64;
    assert_eq!(used, sum_kind(&ledger, "charge"));
    assert_eq!(remaining, sum_kind(&ledger, "grant") - sum_kind(&ledger, "hold") + sum_kind(&ledger, "release"));

    for group in ["day", "key", "model"] {
        let (s, u) = app.get_with_key(&format!("/v1/usage?group_by={group}"), &key).await;
        assert_eq!(s, 200, "{u}");
        assert_eq!(u["group_by"], group);
        let lines = u["data"].as_array().unwrap();
        let charged: i64 = lines.iter().map(|l| l["credits_charged"].as_i64().unwrap()).sum();
        assert_eq!(charged, sum_kind(&ledger, "charge"), "{group}: {u}");
        assert_eq!(u["total"]["credits_charged"].as_i64(), Some(charged));
        assert_eq!(u["total"]["tasks"], 2);
        assert_eq!(u["total"]["video_seconds"], 7);
    }
    let (_, by_key) = app.get_with_key("/v1/usage?group_by=key", &key).await;
    assert_eq!(by_key["data"][0]["group"], key_id.as_str());
    let (_, by_model) = app.get_with_key("/v1/usage?group_by=model", &key).await;
    assert_eq!(by_model["data"][0]["group"], "kling-v3-text-to-video");
    let today = vidgate::limits::format_utc_date(vidgate::util::now_ms());
    let (_, by_day) = app.get_with_key("/v1/usage", &key).await;
    assert_eq!(by_day["data"][0]["group"], today.as_str());
    // A range that ended yesterday has nothing.
    let (_, empty) = app.get_with_key(&format!("/v1/usage?to={today}"), &key).await;
    assert_eq!(empty["total"]["credits_charged"], 0);

    // CSV says the same.
    let (s, ty, csv) = get_csv(&app, "/v1/usage?group_by=model", &key).await;
    assert_eq!((s, ty.as_str()), (200, "text/csv; charset=utf-8"));
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("model,tasks,credits_charged,video_seconds"));
    assert_eq!(rows.next(), Some("kling-v3-text-to-video,2,378000,7"));
    let (s, _, csv) = get_csv(&app, "/v1/credits/ledger?limit=1000", &key).await;
    assert_eq!(s, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,created_at,account_id,kind,amount,task_id,note");
    assert_eq!(lines.len(), ledger.len() + 1);
    let csv_charges: i64 = lines[1..]
        .iter()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[3] == "charge")
        .map(|f| f[4].parse::<i64>().unwrap())
        .sum();
    assert_eq!(csv_charges, sum_kind(&ledger, "charge"));

    // The operator sees the same numbers for this account, and can group by account.
    let (s, admin) = app.admin_get(&format!("/admin/usage?account={account}&group_by=model")).await;
    assert_eq!(s, 200);
    assert_eq!(admin["total"], by_model["total"]);
    let (_, all) = app.admin_get("/admin/usage?group_by=account").await;
    let line = all["data"].as_array().unwrap().iter().find(|l| l["group"] == account.as_str()).cloned().unwrap();
    assert_eq!(line["credits_charged"], 378_000);
    let (_, admin_ledger) = app.admin_get(&format!("/admin/ledger?account={account}&limit=1000")).await;
    assert_eq!(admin_ledger["data"].as_array().unwrap().len(), ledger.len());
    let (s, _, admin_csv) = get_csv(&app, "/admin/ledger?limit=5", &app.admin_key).await;
    assert_eq!(s, 200);
    assert_eq!(admin_csv.lines().count(), 6);
    // Another account sees none of it.
    let (_, other) = app.new_account(1.0).await;
    let (_, u) = app.get_with_key("/v1/usage?group_by=model", &other).await;
    assert_eq!(u["data"], json!([]));
    let theirs = whole_ledger(&app, &other).await;
    assert!(theirs.iter().all(|e| e["kind"] == "grant"), "{theirs:?}");
    app.stop().await;
});

both_backends!(bad_ranges_groups_cursors_and_limits_are_400_naming_the_field, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    for (path, param) in [
        ("/v1/usage?group_by=week", "group_by"),
        ("/v1/usage?group_by=account", "group_by"),
        ("/v1/usage?from=2025-02-30", "from"),
        ("/v1/usage?from=2025-12-02&to=2025-12-01", "from"),
        ("/v1/usage?to=soon", "to"),
        ("/v1/credits/ledger?cursor=nope", "cursor"),
        ("/v1/credits/ledger?limit=0", "limit"),
    ] {
        let (s, b) = app.get(path).await;
        assert_eq!((s, b["error"]["param"].as_str()), (400, Some(param)), "{path}: {b}");
    }
    let (s, _) = app.get_with_key("/admin/usage", &app.api_key).await;
    assert_eq!(s, 401, "an API key is not the admin key");
    app.stop().await;
});
