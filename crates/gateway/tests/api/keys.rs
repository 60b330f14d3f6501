//! Self-service keys: only a key marked `manage_keys` (an account's first key)
//! lists, makes and revokes keys; what it makes stays within its own limits and
//! never manages keys itself; it revokes only itself and keys it made; an
//! account holds at most `max_keys_per_account` live keys, also under
//! concurrency. Every change lands in the audit log.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(the_first_key_manages_the_accounts_keys_and_its_keys_do_not, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (account, first, first_id) = app.new_account_with_key_id(100.0).await;
    let (s, list) = app.get_with_key("/v1/keys", &first).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["manage_keys"], true);

    let (s, made) = app.post_with_key("/v1/keys", &json!({"name": "ci"}), &first).await;
    assert_eq!(s, 200, "{made}");
    let child = made["api_key"].as_str().unwrap().to_owned();
    let child_id = made["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(made["key"]["manage_keys"], false);
    assert_eq!(made["key"]["created_by"], first_id.as_str());
    assert!(!app.get_with_key("/v1/keys", &first).await.1.to_string().contains(&child), "a secret was listed");
    // The new key works, but may not manage keys.
    let (s, _) = app.get_with_key("/v1/credits", &child).await;
    assert_eq!(s, 200);
    for (s, b) in [
        app.get_with_key("/v1/keys", &child).await,
        app.post_with_key("/v1/keys", &json!({}), &child).await,
        app.post_with_key(&format!("/v1/keys/{first_id}/revoke"), &json!({}), &child).await,
    ] {
        assert_eq!((s, b["error"]["code"].as_str()), (403, Some("permission_denied")), "{b}");
    }
    // A key the operator made is not the first key's to revoke; another account's neither.
    let (_, op) = app.admin_post(&format!("/admin/accounts/{account}/keys"), &json!({"name": "ops"})).await;
    let op_id = op["key"]["id"].as_str().unwrap();
    let (s, _) = app.post_with_key(&format!("/v1/keys/{op_id}/revoke"), &json!({}), &first).await;
    assert_eq!(s, 404);
    let (_, _, stranger_id) = app.new_account_with_key_id(1.0).await;
    let (s, _) = app.post_with_key(&format!("/v1/keys/{stranger_id}/revoke"), &json!({}), &first).await;
    assert_eq!(s, 404);
    // Its own child, yes.
    let (s, r) = app.post_with_key(&format!("/v1/keys/{child_id}/revoke"), &json!({}), &first).await;
    assert_eq!((s, r["revoked"].as_bool()), (200, Some(true)), "{r}");
    let (s, _) = app.get_with_key("/v1/credits", &child).await;
    assert_eq!(s, 401, "a revoked key stops at once");
    // And itself.
    let (s, _) = app.post_with_key(&format!("/v1/keys/{first_id}/revoke"), &json!({}), &first).await;
    assert_eq!(s, 200);
    let (s, _) = app.get_with_key("/v1/keys", &first).await;
    assert_eq!(s, 401);
    // Each change is audited with its actor.
    let (_, audit) = app.admin_get(&format!("/admin/audit?account={account}")).await;
    let actions: Vec<(String, String)> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["actor"].as_str().unwrap().to_owned()))
        .collect();
    let by_first = format!("key:{first_id}");
    assert!(actions.contains(&("key.create".to_owned(), by_first.clone())), "{actions:?}");
    assert_eq!(actions.iter().filter(|(a, who)| a == "key.revoke" && *who == by_first).count(), 2, "{actions:?}");
    app.stop().await;
});

both_backends!(a_key_makes_only_keys_within_its_own_limits, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (_, first, first_id) = app.new_account_with_key_id(100.0).await;
    let limits = json!({
        "rpm": 10, "max_concurrent": 3, "budget_credits": 50, "budget_period": "day",
        "allowed_models": ["kling-v3-text-to-video", "kling-v3-image-to-video"],
    });
    let (s, v) = app.admin_patch(&format!("/admin/keys/{first_id}"), &limits).await;
    assert_eq!(s, 200, "{v}");
    // Left out: the maker's own limits.
    let (s, made) = app.post_with_key("/v1/keys", &json!({}), &first).await;
    assert_eq!(s, 200, "{made}");
    let k = &made["key"];
    assert_eq!((k["rpm"].as_i64(), k["max_concurrent"].as_i64()), (Some(10), Some(3)));
    assert_eq!((k["budget_credits"].as_f64(), k["budget_period"].as_str()), (Some(50.0), Some("day")));
    assert_eq!(k["allowed_models"], limits["allowed_models"]);
    // Narrower is fine; a monthly budget no larger than the daily one spends less.
    let narrower =
        json!({"rpm": 2, "allowed_models": ["kling-v3-text-to-video"], "budget_credits": 20, "budget_period": "month"});
    let (s, made) = app.post_with_key("/v1/keys", &narrower, &first).await;
    assert_eq!(s, 200, "{made}");
    let child = made["api_key"].as_str().unwrap();
    let i2v = json!({"model": "kling-v3-image-to-video", "image_start": "https://example.com/a.png"});
    let (s, _) = app.post_with_key("/v1/videos/generations", &i2v, child).await;
    assert_eq!(s, 403, "the child may not use the model it was not given");
    // Anything above the maker's is refused, naming the field.
    for (body, param) in [
        (json!({"rpm": 11}), "rpm"),
        (json!({"rpm": null}), "rpm"),
        (json!({"max_concurrent": 4}), "max_concurrent"),
        (json!({"budget_credits": 51}), "budget_credits"),
        (json!({"budget_credits": null}), "budget_credits"),
        (json!({"budget_credits": 50, "budget_period": "total"}), ""),
        (json!({"allowed_models": ["kling-custom-element"]}), "allowed_models"),
        (json!({"allowed_models": null}), "allowed_models"),
    ] {
        let (s, b) = app.post_with_key("/v1/keys", &body, &first).await;
        if param.is_empty() {
            assert_eq!(s, 200, "a total budget no larger never spends more: {b}");
        } else {
            assert_eq!((s, b["error"]["param"].as_str()), (403, Some(param)), "{body}: {b}");
        }
    }
    app.stop().await;
});

both_backends!(an_account_holds_at_most_max_keys_per_account_live_keys, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.workers = 0;
        c.max_keys_per_account = 4;
    })
    .await
    else {
        return;
    };
    let (account, first, _) = app.new_account_with_key_id(1.0).await;
    let results = app.burst(10, "/v1/keys", &json!({"name": "burst"}), &first).await;
    let made: Vec<&Value> = results.iter().filter(|(s, _, _)| *s == 200).map(|(_, b, _)| b).collect();
    assert_eq!(made.len(), 3, "four live keys at most, the first included: {results:?}");
    for (s, b, _) in results.iter().filter(|(s, _, _)| *s != 200) {
        assert_eq!((*s, b["error"]["code"].as_str()), (409, Some("too_many_keys")), "{b}");
    }
    let (s, b) = app.admin_post(&format!("/admin/accounts/{account}/keys"), &json!({})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("too_many_keys")), "the operator is held to it too");
    let victim = made[0]["key"]["id"].as_str().unwrap();
    let (s, _) = app.post_with_key(&format!("/v1/keys/{victim}/revoke"), &json!({}), &first).await;
    assert_eq!(s, 200);
    let (s, _) = app.post_with_key("/v1/keys", &json!({}), &first).await;
    assert_eq!(s, 200, "a revoked key frees its place");
    app.stop().await;
});
