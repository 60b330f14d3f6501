//! Replicate over HTTP: 201 predictions, problem+json errors, failures in Replicate's words,
//! cancel and the account call.

use serde_json::{Value, json};
use vidgate_sim::{Fault, SimConfig, replicate};

use crate::{Answer, get, poll_until, post, sim};

const TOKEN: &str = "Bearer r8-sim";
const MODEL: &str = "kwaivgi/kling-v3-video";

fn input() -> Value {
    json!({"input": {"prompt": "a lighthouse at dusk", "mode": "standard", "duration": 5, "generate_audio": false}})
}

fn create_url(base: &str, model: &str) -> String {
    format!("{base}/replicate/v1/models/{model}/predictions")
}

fn problem(a: &Answer) -> Value {
    assert_eq!(a.header("content-type"), Some("application/problem+json"), "{}", String::from_utf8_lossy(&a.body));
    a.json()
}

#[tokio::test]
async fn a_prediction_is_created_with_201_and_runs_to_succeeded() {
    let s = sim(SimConfig::default()).await;
    let a = post(&create_url(&s.base_url, MODEL), Some(TOKEN), &input()).await;
    assert_eq!(a.status, 201);
    let p = a.json();
    assert_eq!((p["status"].as_str(), p["model"].as_str()), (Some("starting"), Some(MODEL)));
    let id = p["id"].as_str().unwrap();
    assert_eq!(id.len(), 26);
    assert_eq!(p["input"]["prompt"], "a lighthouse at dusk");
    assert!(p["created_at"].as_str().unwrap().ends_with('Z'));
    let get_url = p["urls"]["get"].as_str().unwrap();
    assert_eq!(p["urls"]["cancel"], format!("{get_url}/cancel"));
    let running = get(get_url, Some(TOKEN)).await.json();
    assert_eq!(running["status"], "processing");
    let done = poll_until(get_url, Some(TOKEN), |v| v["status"] == "succeeded").await;
    // kling-v3-video's output is one URI string.
    let out = done["output"].as_str().unwrap();
    assert_eq!(&get(out, None).await.body[..], vidgate_sim::CLIP);
    assert!(done["completed_at"].is_string() && done["error"].is_null());
    // The older `Token` scheme works too.
    assert_eq!(get(get_url, Some("Token r8-sim")).await.status, 200);
}

#[tokio::test]
async fn errors_are_problem_details_in_replicates_shapes() {
    let s = sim(SimConfig::default()).await;
    let url = create_url(&s.base_url, MODEL);
    let none = post(&url, None, &input()).await;
    let v = problem(&none);
    assert_eq!((none.status, v["title"].as_str()), (401, Some("Unauthenticated")));
    assert_eq!(v["detail"], "You did not pass an authentication token");
    let wrong = post(&url, Some("Bearer nope"), &input()).await;
    assert_eq!(problem(&wrong)["detail"], "You did not pass a valid authentication token");
    // 404 on an unknown model, as replicate-javascript#347 shows it (no title).
    let missing = post(&create_url(&s.base_url, "kwaivgi/kling-v9"), Some(TOKEN), &input()).await;
    assert_eq!(missing.status, 404);
    assert_eq!(problem(&missing), json!({"detail": "The requested resource could not be found.", "status": 404}));
    // 422 names the input.
    let bad = post(&url, Some(TOKEN), &json!({"input": {"mode": "ultra"}})).await;
    assert_eq!(bad.status, 422);
    let v = problem(&bad);
    assert_eq!(v["title"], "Input validation failed");
    assert_eq!(
        v["invalid_fields"][0],
        json!({"type": "required", "field": "input", "description": "prompt is required"})
    );
    assert_eq!(v["invalid_fields"][1]["field"], "input.mode");
    assert!(v["detail"].as_str().unwrap().starts_with("- input: prompt is required\n"));
    // Statuses from faults: 402 billing, 403, 429 throttled.
    s.set(|c| {
        c.submit_fault_rate = 1.0;
        c.submit_fault = Fault::Status(402);
    });
    let billing = post(&url, Some(TOKEN), &input()).await;
    let v = problem(&billing);
    assert_eq!((billing.status, v["title"].as_str(), v["status"].as_i64()), (402, Some("Billing required"), Some(402)));
    assert_eq!(v["detail"], replicate::BILLING_REQUIRED);
    s.set(|c| c.submit_fault = Fault::Status(403));
    assert_eq!(problem(&post(&url, Some(TOKEN), &input()).await)["status"], 403);
    s.set(|c| c.submit_fault = Fault::Status(429));
    let throttled = post(&url, Some(TOKEN), &input()).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(problem(&throttled)["detail"], "Request was throttled. Your rate limit resets in ~30s.");
    assert_eq!(s.stats().accepted, 0);
}

#[tokio::test]
async fn failures_are_in_replicates_words() {
    let s = sim(SimConfig { refuse_rate: 1.0, ..SimConfig::default() }).await;
    let p = post(&create_url(&s.base_url, MODEL), Some(TOKEN), &input()).await.json();
    let done = poll_until(p["urls"]["get"].as_str().unwrap(), Some(TOKEN), |v| v["status"] == "failed").await;
    assert_eq!(done["error"], replicate::SENSITIVE);
    s.set(|c| {
        c.refuse_rate = 0.0;
        c.fail_rate = 1.0;
    });
    let p = post(&create_url(&s.base_url, MODEL), Some(TOKEN), &input()).await.json();
    let done = poll_until(p["urls"]["get"].as_str().unwrap(), Some(TOKEN), |v| v["status"] == "failed").await;
    assert_eq!(done["error"], replicate::INTERRUPTED);
}

#[tokio::test]
async fn cancel_makes_a_running_prediction_canceled() {
    let s = sim(SimConfig { stuck_rate: 1.0, ..SimConfig::default() }).await;
    let p = post(&create_url(&s.base_url, MODEL), Some(TOKEN), &input()).await.json();
    let cancelled = post(p["urls"]["cancel"].as_str().unwrap(), Some(TOKEN), &json!({})).await;
    assert_eq!((cancelled.status, cancelled.json()["status"].as_str()), (200, Some("canceled")));
    assert_eq!(get(p["urls"]["get"].as_str().unwrap(), Some(TOKEN)).await.json()["status"], "canceled");
    assert_eq!(s.stats().cancels, 1);
}

#[tokio::test]
async fn the_account_call_checks_the_token() {
    let s = sim(SimConfig::default()).await;
    let url = format!("{}/replicate/v1/account", s.base_url);
    let ok = get(&url, Some(TOKEN)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["type"], "user");
    let bad = get(&url, Some("Bearer nope")).await;
    assert_eq!((bad.status, problem(&bad)["title"].as_str()), (401, Some("Unauthenticated")));
    assert_eq!(s.stats().credential_checks, 2);
}
