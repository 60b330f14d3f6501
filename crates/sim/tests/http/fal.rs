//! fal over HTTP: the queue, tiers as distinct endpoints, both error shapes, late validation,
//! storage uploads, billing, cancel.

use serde_json::{Value, json};
use vidgate_sim::{Fault, Protocol, SimConfig, fal};

use crate::{Answer, get, post, send, sim, try_send};

const KEY: &str = "Key fal-sim";
const STANDARD: &str = "fal-ai/kling-video/v3/standard/image-to-video";
const PRO: &str = "fal-ai/kling-video/v3/pro/image-to-video";

/// The input example of fal's v3 image-to-video pages (prompt added).
fn i2v() -> Value {
    json!({"prompt": "slow zoom in",
        "start_image_url": "https://storage.googleapis.com/falserverless/example_inputs/kling-v3/standard-i2v/start_image.png",
        "duration": "5", "generate_audio": false})
}

/// Submits, then polls the status URL until COMPLETED; the submit answer and the final status.
async fn run(base: &str, model: &str, body: &Value) -> (Value, Value) {
    let a = post(&format!("{base}/fal/{model}"), Some(KEY), body).await;
    assert_eq!(a.status, 200);
    let queued = a.json();
    let status_url = queued["status_url"].as_str().unwrap().to_owned();
    for _ in 0..20 {
        let s = get(&status_url, Some(KEY)).await;
        let v = s.json();
        if v["status"] == "COMPLETED" {
            assert_eq!(s.status, 200);
            return (queued, v);
        }
        assert_eq!(s.status, 202, "{v}");
        assert!(matches!(v["status"].as_str(), Some("IN_QUEUE" | "IN_PROGRESS")), "{v}");
    }
    panic!("{model} never completed");
}

async fn result(queued: &Value) -> Answer {
    get(queued["response_url"].as_str().unwrap(), Some(KEY)).await
}

#[tokio::test]
async fn the_queue_answers_its_urls_under_owner_and_alias_and_completes() {
    let s = sim(SimConfig { polls_to_finish: 3, ..SimConfig::default() }).await;
    let (queued, done) = run(&s.base_url, STANDARD, &i2v()).await;
    assert_eq!(queued["status"], "IN_QUEUE");
    let id = queued["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let root = format!("{}/fal/fal-ai/kling-video/requests/{id}", s.base_url);
    assert_eq!(queued["response_url"], root);
    assert_eq!(queued["status_url"], format!("{root}/status"));
    assert_eq!(queued["cancel_url"], format!("{root}/cancel"));
    assert!(done["logs"].is_array() && done["metrics"].is_object());
    let r = result(&queued).await;
    assert_eq!(r.status, 200);
    let video = &r.json()["video"];
    assert_eq!(video["content_type"], "video/mp4");
    assert_eq!(&get(video["url"].as_str().unwrap(), None).await.body[..], vidgate_sim::CLIP);
}

#[tokio::test]
async fn tiers_are_distinct_endpoints_in_the_counters() {
    let s = sim(SimConfig::default()).await;
    run(&s.base_url, STANDARD, &i2v()).await;
    run(&s.base_url, STANDARD, &i2v()).await;
    run(&s.base_url, PRO, &i2v()).await;
    let st = s.stats();
    assert_eq!(st.hits(Protocol::Fal, STANDARD), 2);
    assert_eq!(st.hits(Protocol::Fal, PRO), 1);
    assert_eq!(st.accepted_for(Protocol::Fal, PRO), 1);
    assert_eq!(s.last_submit("fal").unwrap().endpoint, PRO);
}

#[tokio::test]
async fn a_refusal_is_a_422_model_error_echoing_the_prompt() {
    let s = sim(SimConfig { refuse_rate: 1.0, ..SimConfig::default() }).await;
    let (queued, done) = run(&s.base_url, PRO, &i2v()).await;
    assert!(done.get("error").is_none(), "a model error, not a request error: {done}");
    let r = result(&queued).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.header("x-fal-retryable"), Some("false"));
    let d = &r.json()["detail"][0];
    assert_eq!(d["type"], "content_policy_violation");
    assert_eq!(d["loc"], json!(["body", "prompt"]));
    assert_eq!(d["input"], "slow zoom in");
    assert_eq!(d["url"], "https://docs.fal.ai/errors/#content_policy_violation");
}

#[tokio::test]
async fn each_documented_failure_comes_in_its_own_shape() {
    let s = sim(SimConfig { fail_rate: 1.0, ..SimConfig::default() }).await;
    let data_uri = "data:image/png;base64,iVBORw0KGgo=";
    let mut body = i2v();
    body["start_image_url"] = json!(data_uri);
    for t in fal::ERROR_TYPES {
        s.set(|c| c.fal_failure = t.name.to_owned());
        let (queued, done) = run(&s.base_url, STANDARD, &body).await;
        let r = result(&queued).await;
        assert_eq!(r.status, t.status, "{}", t.name);
        let v = r.json();
        if t.request_error {
            assert_eq!(v["detail"], t.msg, "{}", t.name);
            assert_eq!(v["error_type"], t.name);
            assert_eq!(r.header("x-fal-error-type"), Some(t.name));
            assert_eq!(done["error_type"], t.name, "the status carries it too");
        } else {
            let d = &v["detail"][0];
            assert_eq!(d["type"], t.name);
            assert_eq!(r.header("x-fal-retryable").map(|h| h == "true"), t.retryable, "{}", t.name);
            assert!(r.header("x-fal-error-type").is_none());
            if d["loc"] == json!(["body"]) {
                // fal's toolkit echoes the whole input, data URI included.
                assert_eq!(d["input"]["start_image_url"], data_uri, "{}", t.name);
            }
        }
    }
    // The retryable header can be overridden.
    s.set(|c| {
        c.fal_failure = "downstream_service_error".to_owned();
        c.fal_retryable = Some(false);
    });
    let (queued, _) = run(&s.base_url, STANDARD, &body).await;
    assert_eq!(result(&queued).await.header("x-fal-retryable"), Some("false"));
}

#[tokio::test]
async fn a_missing_input_is_queued_then_fails_with_a_validation_error() {
    let s = sim(SimConfig::default()).await;
    let mut body = i2v();
    body.as_object_mut().unwrap().remove("start_image_url");
    let (queued, _) = run(&s.base_url, STANDARD, &body).await;
    let r = result(&queued).await;
    assert_eq!(r.status, 422);
    let d = &r.json()["detail"][0];
    assert_eq!((d["type"].as_str(), d["msg"].as_str()), (Some("missing"), Some("Field required")));
    assert_eq!(d["loc"], json!(["body", "start_image_url"]));
    // O3 takes `image_url`, so a v3-shaped body misses it there.
    let (queued, _) = run(&s.base_url, "fal-ai/kling-video/o3/standard/image-to-video", &i2v()).await;
    assert_eq!(result(&queued).await.json()["detail"][0]["loc"], json!(["body", "image_url"]));
    // A number where fal's enum wants a string.
    let mut number = i2v();
    number["duration"] = json!(5);
    let (queued, _) = run(&s.base_url, STANDARD, &number).await;
    assert_eq!(result(&queued).await.json()["detail"][0]["type"], "one_of");
}

#[tokio::test]
async fn a_completed_request_can_carry_a_body_that_is_not_json() {
    let s = sim(SimConfig { bad_body_rate: 1.0, ..SimConfig::default() }).await;
    let (queued, done) = run(&s.base_url, STANDARD, &i2v()).await;
    assert_eq!(done["status"], "COMPLETED");
    let r = result(&queued).await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
}

#[tokio::test]
async fn storage_uploads_give_a_file_url_that_serves_the_bytes() {
    let s = sim(SimConfig::default()).await;
    // fal-js `initiateUpload` sends `{content_type, file_name}`.
    let init = post(
        &format!("{}/fal/storage/upload/initiate?storage_type=fal-cdn-v3", s.base_url),
        Some(KEY),
        &json!({"content_type": "image/png", "file_name": "start.png"}),
    )
    .await;
    assert_eq!(init.status, 200);
    let v = init.json();
    let (upload_url, file_url) = (v["upload_url"].as_str().unwrap(), v["file_url"].as_str().unwrap());
    let png = b"\x89PNG\r\n\x1a\nsim";
    // The signed upload URL takes the bytes without the key.
    let put = try_send("PUT", upload_url, None, Some(png)).await.unwrap();
    assert_eq!(put.status, 200);
    let served = get(file_url, None).await;
    assert_eq!((&served.body[..], served.header("content-type")), (&png[..], Some("image/png")));
    assert_eq!(s.uploaded(file_url).as_deref(), Some(&png[..]));
    assert_eq!(s.stats().uploads, 1);
    let unauthorized = post(&format!("{}/fal/storage/upload/initiate", s.base_url), Some("Key nope"), &json!({})).await;
    assert_eq!(unauthorized.status, 401);
    // The uploaded URL is what the input then carries.
    let mut body = i2v();
    body["start_image_url"] = json!(file_url);
    let (queued, _) = run(&s.base_url, STANDARD, &body).await;
    assert_eq!(result(&queued).await.status, 200);
}

#[tokio::test]
async fn data_uris_fail_on_models_that_do_not_take_them() {
    let s = sim(SimConfig { fal_accept_data_uris: false, ..SimConfig::default() }).await;
    let mut body = i2v();
    body["start_image_url"] = json!("data:image/png;base64,iVBORw0KGgo=");
    let (queued, _) = run(&s.base_url, STANDARD, &body).await;
    let r = result(&queued).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["detail"][0]["type"], "file_download_error");
}

#[tokio::test]
async fn billing_answers_admin_keys_and_refuses_the_rest() {
    let s = sim(SimConfig::default()).await;
    let url = format!("{}/fal/v1/account/billing?expand=credits", s.base_url);
    let ok = get(&url, Some(KEY)).await;
    assert_eq!(ok.status, 200);
    let v = ok.json();
    assert!(v["username"].is_string() && v["credits"]["current_balance"].is_f64(), "{v}");
    assert_eq!(get(&format!("{}/fal/v1/account/billing", s.base_url), Some(KEY)).await.json().get("credits"), None);
    let wrong = get(&url, Some("Key wrong")).await;
    assert_eq!((wrong.status, wrong.json()["detail"].as_str()), (401, Some(fal::UNAUTHORIZED)));
    s.set(|c| c.fal_key_admin = false);
    assert_eq!(get(&url, Some(KEY)).await.status, 403);
    assert_eq!(s.stats().credential_checks, 4);
}

#[tokio::test]
async fn cancel_is_requested_before_completion_and_refused_after() {
    let s = sim(SimConfig { stuck_rate: 1.0, ..SimConfig::default() }).await;
    let queued = post(&format!("{}/fal/{PRO}", s.base_url), Some(KEY), &i2v()).await.json();
    let cancel = send("PUT", queued["cancel_url"].as_str().unwrap(), Some(KEY), None).await;
    assert_eq!((cancel.status, cancel.json()["status"].as_str()), (202, Some("CANCELLATION_REQUESTED")));
    let done = get(queued["status_url"].as_str().unwrap(), Some(KEY)).await.json();
    assert_eq!((done["status"].as_str(), done["error_type"].as_str()), (Some("COMPLETED"), Some("client_cancelled")));
    let again = send("PUT", queued["cancel_url"].as_str().unwrap(), Some(KEY), None).await;
    assert_eq!(again.json()["status"], "ALREADY_COMPLETED");
    assert_eq!(s.stats().cancels, 1);
}

#[tokio::test]
async fn submit_faults_answer_in_fals_shapes() {
    let s = sim(SimConfig { submit_fault_rate: 1.0, submit_fault: Fault::Status(503), ..SimConfig::default() }).await;
    let url = format!("{}/fal/{STANDARD}", s.base_url);
    let a = post(&url, Some(KEY), &i2v()).await;
    assert_eq!((a.status, a.header("x-fal-error-type")), (503, Some("runner_scheduling_failure")));
    assert_eq!(a.json()["error_type"], "runner_scheduling_failure");
    s.set(|c| c.submit_fault = Fault::Status(403));
    let locked = post(&url, Some(KEY), &i2v()).await;
    assert_eq!((locked.status, locked.json()["detail"].as_str()), (403, Some(fal::LOCKED)));
    s.set(|c| c.submit_fault = Fault::KlingCode(1302));
    assert_eq!(post(&url, Some(KEY), &i2v()).await.status, 429);
    let unauthorized = post(&url, Some("Bearer fal-sim"), &i2v()).await;
    assert_eq!(unauthorized.status, 401, "fal's prefix is Key");
    assert_eq!(s.stats().accepted, 0);
}
