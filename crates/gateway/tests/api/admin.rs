//! Admin routes: accounts, keys (create, list, revoke), credit grants; the admin
//! key guards them and key secrets are never listed.

use serde_json::json;

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(admin_manages_accounts_keys_and_credits, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let (s, _) = app.post_with_key("/admin/accounts", &json!({}), &app.api_key).await;
    assert_eq!(s, 401, "an API key is not the admin key");
    let (account, key) = app.new_account(10.0).await;
    assert_eq!(app.remaining(&key).await, 10.0);

    let (s, g) = app.admin_post(&format!("/admin/accounts/{account}/credits"), &json!({"credits": 5.5})).await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(app.remaining(&key).await, 15.5);
    let (s, g) = app.admin_post(&format!("/admin/accounts/{account}/credits"), &json!({"credits": -100})).await;
    assert_eq!((s, g["error"]["param"].as_str()), (400, Some("credits")));
    assert_eq!(app.remaining(&key).await, 15.5);

    let (s, k2) = app.admin_post(&format!("/admin/accounts/{account}/keys"), &json!({"name": "second"})).await;
    assert_eq!(s, 200, "{k2}");
    let second = k2["api_key"].as_str().unwrap();
    assert_eq!(app.remaining(second).await, 15.5);
    let (s, keys) = app.get_with_key(&format!("/admin/accounts/{account}/keys"), &app.admin_key).await;
    assert_eq!(s, 200);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(!keys.to_string().contains(second), "a key secret was listed");

    let key_id = k2["key"]["id"].as_str().unwrap();
    let (s, _) = app.admin_post(&format!("/admin/keys/{key_id}/revoke"), &json!({})).await;
    assert_eq!(s, 200);
    let (s, _) = app.get_with_key("/v1/credits", second).await;
    assert_eq!(s, 401, "a revoked key still works");
    let (s, _) = app.admin_post(&format!("/admin/keys/{key_id}/revoke"), &json!({})).await;
    assert_eq!(s, 404);
    let (s, _) = app.admin_post("/admin/accounts/acct-nope/credits", &json!({"credits": 1})).await;
    assert_eq!(s, 404);
    app.stop().await;
});
