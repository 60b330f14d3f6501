//! EvoLink over HTTP: the create answer, `TaskDetailResponse` (no `usage`, no `estimated_time`),
//! task errors, the error tables and `/v1/credits`.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use vidgate_sim::{Fault, SimConfig};

use crate::{get, poll_until, post, sim};

const KEY: &str = "Bearer sk-evo-sim";

/// The "basic" example of kling-v3-text-to-video.json.
fn basic() -> Value {
    json!({"model": "kling-v3-text-to-video", "prompt": "A cat running on a grass field under bright sunshine",
        "duration": 5, "aspect_ratio": "16:9", "quality": "720p"})
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn create_and_task_answers_follow_their_two_schemas() {
    let s = sim(SimConfig::default()).await;
    let a = post(&format!("{}/evolink/v1/videos/generations", s.base_url), Some(KEY), &basic()).await;
    assert_eq!(a.status, 200);
    let t = a.json();
    // VideoGenerationResponse.
    assert_eq!(
        keys(&t),
        set(&["created", "id", "model", "object", "progress", "status", "task_info", "type", "usage"])
    );
    assert_eq!(keys(&t["task_info"]), set(&["can_cancel", "estimated_time", "video_duration"]));
    assert_eq!(keys(&t["usage"]), set(&["billing_rule", "credits_reserved", "user_group"]));
    assert_eq!((t["status"].as_str(), t["usage"]["billing_rule"].as_str()), (Some("pending"), Some("per_second")));
    assert_eq!(t["usage"]["credits_reserved"], 270000.0, "the kling-v3 example's scale");
    let id = t["id"].as_str().unwrap();
    assert!(id.starts_with("task-unified-"), "{id}");
    let url = format!("{}/evolink/v1/tasks/{id}", s.base_url);
    let running = get(&url, Some(KEY)).await.json();
    // TaskDetailResponse: no usage, no estimated_time, task_info.can_cancel only.
    assert_eq!(keys(&running), set(&["created", "id", "model", "object", "progress", "status", "task_info", "type"]));
    assert_eq!(keys(&running["task_info"]), set(&["can_cancel"]));
    assert_eq!(running["status"], "processing");
    let done = poll_until(&url, Some(KEY), |v| v["status"] == "completed").await;
    assert_eq!((done["progress"].as_i64(), done["task_info"]["can_cancel"].as_bool()), (Some(100), Some(false)));
    let link = done["results"][0].as_str().unwrap();
    assert_eq!(&get(link, None).await.body[..], vidgate_sim::CLIP);
    assert!(done.get("usage").is_none() && done.get("error").is_none());
}

#[tokio::test]
async fn failed_tasks_carry_a_task_error() {
    let s = sim(SimConfig { refuse_rate: 1.0, ..SimConfig::default() }).await;
    let t = post(&format!("{}/evolink/v1/videos/generations", s.base_url), Some(KEY), &basic()).await.json();
    let url = format!("{}/evolink/v1/tasks/{}", s.base_url, t["id"].as_str().unwrap());
    let done = poll_until(&url, Some(KEY), |v| v["status"] == "failed").await;
    assert_eq!(keys(&done["error"]), set(&["code", "message", "type"]));
    assert_eq!(
        (done["error"]["code"].as_str(), done["error"]["type"].as_str()),
        (Some("content_policy_violation"), Some("task_error"))
    );
    assert!(done.get("results").is_none());
    s.set(|c| {
        c.refuse_rate = 0.0;
        c.fail_rate = 1.0;
    });
    let t = post(&format!("{}/evolink/v1/videos/generations", s.base_url), Some(KEY), &basic()).await.json();
    let url = format!("{}/evolink/v1/tasks/{}", s.base_url, t["id"].as_str().unwrap());
    let done = poll_until(&url, Some(KEY), |v| v["status"] == "failed").await;
    assert_eq!(done["error"]["code"], "service_error");
}

#[tokio::test]
async fn errors_follow_each_endpoints_table() {
    let s = sim(SimConfig::default()).await;
    let create = format!("{}/evolink/v1/videos/generations", s.base_url);
    let unauthorized = post(&create, Some("Bearer nope"), &basic()).await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(
        unauthorized.json(),
        json!({"error": {"code": "unauthorized", "message": "Invalid or expired token", "type": "authentication_error"}})
    );
    let no_start = post(&create, Some(KEY), &json!({"model": "kling-v3-image-to-video", "prompt": "p"})).await;
    assert_eq!(no_start.status, 400);
    let e = &no_start.json()["error"];
    assert_eq!((e["code"].as_str(), e["param"].as_str()), (Some("invalid_request"), Some("image_start")));
    let bad_model = post(&create, Some(KEY), &json!({"model": "kling-v9", "prompt": "p"})).await;
    assert_eq!(bad_model.json()["error"]["param"], "model");
    let bad_id = get(&format!("{}/evolink/v1/tasks/abc", s.base_url), Some(KEY)).await;
    assert_eq!((bad_id.status, bad_id.json()["error"]["code"].as_str()), (400, Some("invalid_task_id")));
    let unknown = get(&format!("{}/evolink/v1/tasks/task-unified-1-nothing", s.base_url), Some(KEY)).await;
    assert_eq!((unknown.status, unknown.json()["error"]["code"].as_str()), (404, Some("task_not_found")));
    s.set(|c| {
        c.submit_fault_rate = 1.0;
        c.submit_fault = Fault::Status(402);
    });
    let broke = post(&create, Some(KEY), &basic()).await;
    assert_eq!((broke.status, broke.json()["error"]["code"].as_str()), (402, Some("insufficient_quota")));
    s.set(|c| c.submit_fault = Fault::Status(403));
    let denied = post(&create, Some(KEY), &basic()).await.json();
    assert_eq!(denied["error"]["message"], "Token does not have access to model: kling-v3-text-to-video");
    assert_eq!(s.stats().accepted, 0);
}

#[tokio::test]
async fn credits_answers_the_documented_example() {
    let s = sim(SimConfig::default()).await;
    let url = format!("{}/evolink/v1/credits", s.base_url);
    let ok = get(&url, Some(KEY)).await.json();
    assert_eq!(ok["success"], true);
    assert_eq!(ok["data"]["user"]["remaining_credits"], 1095.3996);
    let bad = get(&url, None).await;
    assert_eq!((bad.status, bad.json()["error"]["code"].as_i64()), (401, Some(401)), "an integer code here");
}

#[tokio::test]
async fn a_custom_element_completes_with_result_data() {
    let s = sim(SimConfig::default()).await;
    let body = json!({"model": "kling-custom-element", "model_params": {"element_name": "My Character",
        "element_description": "A young male character", "reference_type": "image_refer",
        "element_image_list": {"frontal_image": "https://example.com/front.jpg", "refer_images": [{"image_url": "https://example.com/side.jpg"}]}}});
    let t = post(&format!("{}/evolink/v1/videos/generations", s.base_url), Some(KEY), &body).await.json();
    assert_eq!(t["usage"]["billing_rule"], "per_call");
    let url = format!("{}/evolink/v1/tasks/{}", s.base_url, t["id"].as_str().unwrap());
    let done = poll_until(&url, Some(KEY), |v| v["status"] == "completed").await;
    assert!(done["result_data"]["element_id"].is_string(), "{done}");
    let mut no_type = body.clone();
    no_type["model_params"].as_object_mut().unwrap().remove("reference_type");
    let a = post(&format!("{}/evolink/v1/videos/generations", s.base_url), Some(KEY), &no_type).await;
    assert_eq!(a.json()["error"]["param"], "model_params.reference_type");
}
