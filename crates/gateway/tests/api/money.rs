//! Money: exact prices, holds at create, 402 with nothing created, and no balance
//! below zero even when many creates race for the last credits.

use serde_json::json;

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(every_quality_sound_and_duration_reserves_the_seed_price, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.workers = 0;
        c.signup_credits = vidgate_api::credits::Credits::from_units(100_000 * 10_000);
    })
    .await
    else {
        return;
    };
    let per_second = [("720p", "off", 54000), ("720p", "on", 81000), ("1080p", "off", 71982), ("1080p", "on", 108000)];
    for (quality, sound, units) in per_second {
        for duration in 3..=15u32 {
            let (s, t) = app
                .create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": duration, "quality": quality, "sound": sound}))
                .await;
            assert_eq!(s, 200, "{t}");
            assert_eq!(t["usage"]["credits_reserved"], units * i64::from(duration), "{quality} {sound} {duration}s");
        }
    }
    app.stop().await;
});

both_backends!(a_create_that_cannot_be_covered_is_402_and_creates_nothing, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let (_, key) = app.new_account(20.0).await;
    let body = json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 5});
    let (s, b) = app.post_with_key("/v1/videos/generations", &body, &key).await;
    assert_eq!(s, 402, "{b}");
    assert_eq!(b["error"]["code"], "insufficient_quota");
    assert_eq!(b["error"]["type"], "insufficient_quota");
    assert_eq!(app.remaining(&key).await, 20.0);
    let (_, list) = app.get_with_key("/v1/tasks", &key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    app.stop().await;
});

both_backends!(fifty_concurrent_creates_never_overdraw_the_account, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let (account, key) = app.new_account(100.0).await;
    let body = json!({"model": "kling-v3-text-to-video", "prompt": "race", "duration": 3});
    let mut handles = Vec::new();
    for _ in 0..50 {
        let client = app.client.clone();
        let url = app.url("/v1/videos/generations");
        let key = key.clone();
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            client.post(url).bearer_auth(key).json(&body).send().await.unwrap().status().as_u16()
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for h in handles {
        match h.await.unwrap() {
            200 => ok += 1,
            402 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // 16.2 credits each: six fit in 100.
    assert_eq!((ok, refused), (6, 44));
    assert!((app.remaining(&key).await - 2.8).abs() < 1e-9);
    let (grants, buckets) = app.state.store.ledger_check(&vidgate::ids::AccountId::from_raw(&account)).await.unwrap();
    assert_eq!(grants, buckets, "the ledger does not balance");
    app.stop().await;
});

both_backends!(a_key_with_a_credit_cap_cannot_spend_past_it, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let (account, _) = app.new_account(1000.0).await;
    let (s, k) =
        app.admin_post(&format!("/admin/accounts/{account}/keys"), &json!({"name": "capped", "credit_cap": 30})).await;
    assert_eq!(s, 200, "{k}");
    let key = k["api_key"].as_str().unwrap();
    let body = json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 3});
    let (s, _) = app.post_with_key("/v1/videos/generations", &body, key).await;
    assert_eq!(s, 200);
    let (s, b) = app.post_with_key("/v1/videos/generations", &body, key).await;
    assert_eq!(s, 402, "{b}");
    let (_, credits) = app.get_with_key("/v1/credits", key).await;
    assert_eq!(credits["data"]["token"]["unlimited_credits"], false);
    assert!((credits["data"]["token"]["remaining_credits"].as_f64().unwrap() - 13.8).abs() < 1e-9, "{credits}");
    assert_eq!(credits["success"], true);
    assert_eq!(credits["message"], "");
    app.stop().await;
});
