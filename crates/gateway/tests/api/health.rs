//! Health, readiness, metrics, the OpenAPI document, the playground and errors
//! for unknown routes.

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(health_ready_and_metrics_answer, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (s, b) = app.get("/healthz").await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")));
    let (s, _) = app.get("/readyz").await;
    assert_eq!(s, 200);
    // One request counted, then visible in /metrics by its route pattern.
    let (s, _) = app.get("/v1/tasks/task-unified-1-aaaaaaaa").await;
    assert_eq!(s, 404);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("vidgate_http_requests_total{method=\"GET\",route=\"/v1/tasks/{task_id}\",status=\"404\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("vidgate_tasks_open 0"), "{metrics}");
    assert!(metrics.contains("vidgate_queue_depth 0"), "{metrics}");
    assert!(metrics.contains("# TYPE vidgate_http_request_duration_seconds histogram"), "{metrics}");
    assert!(
        metrics.contains("vidgate_http_request_duration_seconds_count{route=\"/v1/tasks/{task_id}\"} 1"),
        "{metrics}"
    );
    // The /metrics request itself is in flight on an open connection.
    assert!(metrics.contains("vidgate_http_requests_in_flight 1"), "{metrics}");
    assert!(!metrics.contains("vidgate_http_connections_open 0\n"), "{metrics}");
    app.stop().await;
});

both_backends!(openapi_lists_every_route_with_its_errors, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (s, doc) = app.get("/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    for (path, method) in [
        ("/v1/videos/generations", "post"),
        ("/v1/tasks", "get"),
        ("/v1/tasks/{task_id}", "get"),
        ("/v1/tasks/{task_id}/cancel", "post"),
        ("/v1/credits", "get"),
        ("/v1/models", "get"),
        ("/v1/files", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/admin/accounts", "post"),
        ("/admin/keys/{key_id}/revoke", "post"),
        ("/admin/accounts/{account_id}/credits", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(op["operationId"].is_string(), "{method} {path} has no operation id");
    }
    let create = &doc["paths"]["/v1/videos/generations"]["post"]["responses"];
    for code in ["200", "400", "401", "402", "403", "409", "413"] {
        assert!(create[code].is_object(), "create lacks {code}");
    }
    app.stop().await;
});

both_backends!(unknown_routes_and_methods_answer_in_the_error_format, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (s, b) = app.get("/v1/nope").await;
    assert_eq!(s, 404);
    assert_eq!(b["error"]["code"], "not_found");
    let (s, b) = app.client.delete(app.url("/v1/tasks")).send().await.map(|r| (r.status().as_u16(), r)).unwrap();
    assert_eq!(s, 405);
    let b: serde_json::Value = b.json().await.unwrap();
    assert_eq!(b["error"]["code"], "method_not_allowed");
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    app.stop().await;
});

both_backends!(requests_without_a_valid_key_are_401, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let resp = app.client.get(app.url("/v1/credits")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let b: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(b["error"]["code"], "unauthorized");
    assert_eq!(b["error"]["type"], "authentication_error");
    let (s, _) = app.get_with_key("/v1/credits", "sk-vg-wrong").await;
    assert_eq!(s, 401);
    app.stop().await;
});
