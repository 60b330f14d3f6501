//! Kling over HTTP: the envelope, codes at their documented statuses, the refusal wording,
//! required fields, both design standards, elements and the account query.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use vidgate_sim::{Fault, SimConfig, kling};

use crate::{get, poll_until, post, sim};

/// A JWT as Kling's Python sample makes it (HS256, iss = AK, exp = now + 1800, nbf = now - 5).
fn jwt(ak: &str, sk: &str, shift: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + shift;
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(json!({"iss": ak, "exp": now + 1800, "nbf": now - 5}).to_string());
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(sk.as_bytes()).unwrap();
    mac.update(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

fn bearer_jwt() -> String {
    format!("Bearer {}", jwt("ak-sim", "sk-sim", 0))
}

const KEY: &str = "Bearer kling-key-sim";

/// The captured live text2video request (api-specs 2.4).
fn t2v() -> Value {
    json!({"model_name": "kling-v3", "prompt": "a lighthouse at dusk", "duration": "5", "mode": "std", "aspect_ratio": "16:9"})
}

#[tokio::test]
async fn a_legacy_task_runs_to_succeed_in_the_documented_envelope() {
    let s = sim(SimConfig::default()).await;
    let a = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(&bearer_jwt()), &t2v()).await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!((v["code"].as_i64(), v["message"].as_str()), (Some(0), Some("SUCCEED")));
    assert_eq!(v["request_id"].as_str().map(str::len), Some(36));
    let id = v["data"]["task_id"].as_str().unwrap().to_owned();
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "Kling ids are numeric strings: {id}");
    assert_eq!(v["data"]["task_status"], "submitted");
    let url = format!("{}/kling/v1/videos/text2video/{id}", s.base_url);
    let first = get(&url, Some(KEY)).await.json();
    assert_eq!(first["data"]["task_status"], "processing");
    let done = poll_until(&url, Some(KEY), |v| v["data"]["task_status"] == "succeed").await;
    let video = &done["data"]["task_result"]["videos"][0];
    assert_eq!(video["duration"], "5");
    let file = crate::get(video["url"].as_str().unwrap(), None).await;
    assert_eq!(&file.body[..], vidgate_sim::CLIP);
    assert_eq!(s.stats().accepted_for(vidgate_sim::Protocol::Kling, "kling-v3"), 1);
    assert_eq!(s.stats().hits(vidgate_sim::Protocol::Kling, "v1/videos/text2video"), 1);
}

#[tokio::test]
async fn a_content_refusal_ends_failed_in_klings_own_words() {
    let s = sim(SimConfig { refuse_rate: 1.0, ..SimConfig::default() }).await;
    let v = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(KEY), &t2v()).await.json();
    let url = format!("{}/kling/v1/videos/text2video/{}", s.base_url, v["data"]["task_id"].as_str().unwrap());
    let done = poll_until(&url, Some(KEY), |v| v["data"]["task_status"] == "failed").await;
    assert_eq!(done["code"], 0, "a failed task is still a successful query");
    assert_eq!(done["data"]["task_status_msg"], "Failure to pass the risk control system");
}

#[tokio::test]
async fn a_server_side_failure_says_nothing_of_policy() {
    let s = sim(SimConfig { fail_rate: 1.0, ..SimConfig::default() }).await;
    let v = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(KEY), &t2v()).await.json();
    let url = format!("{}/kling/v1/videos/text2video/{}", s.base_url, v["data"]["task_id"].as_str().unwrap());
    let done = poll_until(&url, Some(KEY), |v| v["data"]["task_status"] == "failed").await;
    let msg = done["data"]["task_status_msg"].as_str().unwrap();
    assert_eq!(msg, kling::SERVER_FAILURE);
    for word in ["risk", "policy", "sensitive", "safety"] {
        assert!(!msg.to_lowercase().contains(word), "{msg}");
    }
}

#[tokio::test]
async fn every_business_code_comes_at_its_documented_status() {
    let s = sim(SimConfig { submit_fault_rate: 1.0, ..SimConfig::default() }).await;
    for (code, http, _) in kling::CODES {
        s.set(|c| c.submit_fault = Fault::KlingCode(code));
        let a = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(KEY), &t2v()).await;
        assert_eq!(a.status, http, "code {code}");
        let v = a.json();
        assert_eq!(v["code"], code);
        assert!(v["request_id"].is_string() && v.get("data").is_none(), "{v}");
    }
    // The third-party observed form of 1303: HTTP 200 with the code in the body.
    s.set(|c| c.submit_fault = Fault::Kling1303);
    let a = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(KEY), &t2v()).await;
    assert_eq!((a.status, a.json()["code"].as_i64()), (200, Some(1303)));
    // A bare status gets the code Kling pairs with it.
    s.set(|c| c.submit_fault = Fault::Status(503));
    let a = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(KEY), &t2v()).await;
    assert_eq!((a.status, a.json()["code"].as_i64()), (503, Some(5001)));
    assert_eq!(s.stats().accepted, 0);
}

#[tokio::test]
async fn credentials_get_the_documented_auth_codes() {
    let s = sim(SimConfig::default()).await;
    let url = format!("{}/kling/v1/videos/text2video", s.base_url);
    let cases = [
        (None, 1001),
        (Some(format!("Bearer {}", jwt("ak-sim", "wrong", 0))), 1002),
        (Some(format!("Bearer {}", jwt("someone", "sk-sim", 0))), 1002),
        (Some(format!("Bearer {}", jwt("ak-sim", "sk-sim", -4000))), 1004),
        (Some(format!("Bearer {}", jwt("ak-sim", "sk-sim", 600))), 1003),
        (Some("Bearer not-the-key".to_owned()), 1002),
    ];
    for (auth, code) in cases {
        let a = post(&url, auth.as_deref(), &t2v()).await;
        assert_eq!((a.status, a.json()["code"].as_i64()), (401, Some(code)), "{auth:?}");
    }
    assert_eq!(s.stats().unauthorized, 6);
    assert_eq!(post(&url, Some(KEY), &t2v()).await.status, 200, "the static API key");
}

#[tokio::test]
async fn required_fields_are_checked_with_1201_naming_them() {
    let s = sim(SimConfig::default()).await;
    let cases = [
        ("text2video", json!({"model_name": "kling-v3"}), "prompt"),
        ("image2video", json!({"model_name": "kling-v3", "prompt": "p"}), "image"),
        ("image2video", json!({"model_name": "kling-v3", "image": "data:image/png;base64,AAAA"}), "data:"),
        ("text2video", json!({"model_name": "kling-v3", "prompt": "p", "mode": "ultra"}), "mode"),
        ("omni-video", json!({"prompt": "p", "aspect_ratio": "1:1"}), "model_name"),
        ("omni-video", json!({"model_name": "kling-v3-omni", "prompt": "p"}), "aspect_ratio"),
        ("motion-control", json!({"image_url": "i", "video_url": "v", "mode": "std"}), "character_orientation"),
    ];
    for (kind, body, named) in cases {
        let a = post(&format!("{}/kling/v1/videos/{kind}", s.base_url), Some(KEY), &body).await;
        let v = a.json();
        assert_eq!((a.status, v["code"].as_i64()), (400, Some(1201)), "{kind} {body}");
        assert!(v["message"].as_str().unwrap().contains(named), "{kind}: {v}");
    }
    let unknown = post(
        &format!("{}/kling/v1/videos/text2video", s.base_url),
        Some(KEY),
        &json!({"model_name": "kling-v9", "prompt": "p"}),
    )
    .await;
    assert_eq!((unknown.status, unknown.json()["code"].as_i64()), (404, Some(1203)));
    let no_path = post(&format!("{}/kling/v1/videos/teleport", s.base_url), Some(KEY), &t2v()).await;
    assert_eq!((no_path.status, no_path.json()["code"].as_i64()), (404, Some(1202)));
    assert_eq!(s.stats().accepted, 0);
}

#[tokio::test]
async fn omni_video_and_motion_control_take_their_documented_bodies() {
    let s = sim(SimConfig::default()).await;
    // The "视频参考" example of omni-video-o1.md, with ids filled in.
    let omni = json!({"model_name": "kling-video-o1", "prompt": "参考<<<video_1>>>的运镜方式",
        "image_list": [{"image_url": "https://x/i.png"}], "element_list": [{"element_id": 1000001}, {"element_id": "1000002"}],
        "video_list": [{"video_url": "https://x/v.mp4", "refer_type": "feature", "keep_original_sound": "yes"}],
        "mode": "pro", "aspect_ratio": "1:1", "duration": "7"});
    let a = post(&format!("{}/kling/v1/videos/omni-video", s.base_url), Some(KEY), &omni).await;
    assert_eq!(a.status, 200, "{}", a.json());
    let id = a.json()["data"]["task_id"].as_str().unwrap().to_owned();
    let done = poll_until(&format!("{}/kling/v1/videos/omni-video/{id}", s.base_url), Some(KEY), |v| {
        v["data"]["task_status"] == "succeed"
    })
    .await;
    assert_eq!(done["data"]["task_result"]["videos"][0]["duration"], "7");
    let motion = json!({"model_name": "kling-v3", "image_url": "https://x/i.png", "video_url": "https://x/v.mp4",
        "character_orientation": "video", "mode": "pro", "keep_original_sound": "no"});
    assert_eq!(post(&format!("{}/kling/v1/videos/motion-control", s.base_url), Some(KEY), &motion).await.status, 200);
    let st = s.stats();
    assert_eq!(st.accepted_for(vidgate_sim::Protocol::Kling, "kling-video-o1"), 1);
    assert_eq!(st.accepted_for(vidgate_sim::Protocol::Kling, "kling-v3"), 1);
}

#[tokio::test]
async fn a_task_is_found_under_its_own_path_and_by_its_external_id() {
    let s = sim(SimConfig { polls_to_finish: 1, ..SimConfig::default() }).await;
    let mut body = t2v();
    body["external_task_id"] = json!("order-7");
    let v = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(KEY), &body).await.json();
    assert_eq!(v["data"]["task_info"]["external_task_id"], "order-7");
    let id = v["data"]["task_id"].as_str().unwrap();
    let elsewhere = get(&format!("{}/kling/v1/videos/image2video/{id}", s.base_url), Some(KEY)).await;
    assert_eq!((elsewhere.status, elsewhere.json()["code"].as_i64()), (404, Some(1203)));
    let by_external = get(&format!("{}/kling/v1/videos/text2video/order-7", s.base_url), Some(KEY)).await.json();
    assert_eq!(by_external["data"]["task_id"], id);
    let again = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(KEY), &body).await;
    assert_eq!((again.status, again.json()["code"].as_i64()), (400, Some(1201)), "external ids are unique");
}

#[tokio::test]
async fn element_creation_requires_reference_type_and_yields_a_numeric_element_id() {
    let s = sim(SimConfig::default()).await;
    let url = format!("{}/kling/v1/general/advanced-custom-elements", s.base_url);
    let mut body = json!({"element_name": "hero", "element_description": "a red fox",
        "element_image_list": {"frontal_image": "https://x/f.png", "refer_images": [{"image_url": "https://x/s.png"}]}});
    let a = post(&url, Some(&bearer_jwt()), &body).await;
    assert_eq!((a.status, a.json()["code"].as_i64()), (400, Some(1201)));
    assert!(a.json()["message"].as_str().unwrap().contains("reference_type"));
    body["reference_type"] = json!("image_refer");
    let v = post(&url, Some(&bearer_jwt()), &body).await.json();
    assert_eq!(v["data"]["task_status"], "submitted");
    let id = v["data"]["task_id"].as_str().unwrap();
    let done = poll_until(&format!("{url}/{id}"), Some(KEY), |v| v["data"]["task_status"] == "succeed").await;
    let element = &done["data"]["task_result"]["elements"][0];
    assert!(element["element_id"].is_u64(), "{element}");
    assert_eq!(element["reference_type"], "image_refer");
    assert_eq!(element["element_name"], "hero");
    assert_eq!(s.last_body("element").unwrap()["reference_type"], "image_refer");
    // An element task is not a video task.
    let as_video = get(&format!("{}/kling/v1/videos/image2video/{id}", s.base_url), Some(KEY)).await;
    assert_eq!(as_video.status, 404);
}

#[tokio::test]
async fn the_new_standard_takes_only_the_api_key_and_is_polled_at_tasks() {
    let s = sim(SimConfig::default()).await;
    // The request example of kling-3.0-turbo-t2v.md.
    let body = json!({"prompt": "A girl sat on the train, looking out the window with a melancholic expression, her head swaying with the train.",
        "options": {"callback_url": "https://xxx/callback", "watermark_info": {"enabled": false}, "external_task_id": ""},
        "settings": {"duration": 3, "resolution": "720p", "aspect_ratio": "9:16"}});
    let url = format!("{}/kling/text-to-video/kling-3.0-turbo", s.base_url);
    let jwt = post(&url, Some(&bearer_jwt()), &body).await;
    assert_eq!((jwt.status, jwt.json()["code"].as_i64()), (401, Some(1002)), "API key only");
    let a = post(&url, Some(KEY), &body).await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v["data"]["status"], "submitted");
    let id = v["data"]["id"].as_str().unwrap().to_owned();
    let tasks = format!("{}/kling/tasks?task_ids={id},860000000000999999", s.base_url);
    let done = poll_until(&tasks, Some(KEY), |v| v["data"][0]["status"] == "succeeded").await;
    assert_eq!(done["data"].as_array().unwrap().len(), 1, "unknown ids are left out");
    let out = &done["data"][0]["outputs"][0];
    assert_eq!((out["type"].as_str(), out["duration"].as_str()), (Some("video"), Some("3")));
    assert!(out["url"].as_str().unwrap().ends_with(".mp4"));
    assert_eq!(done["data"][0]["billing"][0]["charge_type"], "unit");
    let both = get(&format!("{}/kling/tasks?task_ids={id}&external_task_ids=x", s.base_url), Some(KEY)).await;
    assert_eq!(both.json()["code"], 1201);
    let turbo_4k = post(&url, Some(KEY), &json!({"prompt": "p", "settings": {"resolution": "4k"}})).await;
    assert_eq!(turbo_4k.json()["code"], 1201);
    let no_model = post(&format!("{}/kling/text-to-video/kling-9", s.base_url), Some(KEY), &body).await;
    assert_eq!((no_model.status, no_model.json()["code"].as_i64()), (404, Some(1203)));
    assert_eq!(s.stats().hits(vidgate_sim::Protocol::Kling, "text-to-video/kling-3.0-turbo"), 3);
    // A new-standard task is not on a legacy path.
    assert_eq!(get(&format!("{}/kling/v1/videos/text2video/{id}", s.base_url), Some(KEY)).await.status, 404);
}

#[tokio::test]
async fn the_new_standard_refusal_is_in_message() {
    let s = sim(SimConfig { refuse_rate: 1.0, polls_to_finish: 1, ..SimConfig::default() }).await;
    let body =
        json!({"contents": [{"type": "prompt", "text": "p"}, {"type": "first_frame", "url": "https://x/i.png"}]});
    let v = post(&format!("{}/kling/image-to-video/kling-3.0", s.base_url), Some(KEY), &body).await.json();
    let id = v["data"]["id"].as_str().unwrap();
    let done = get(&format!("{}/kling/tasks?task_ids={id}", s.base_url), Some(KEY)).await.json();
    assert_eq!(done["data"][0]["status"], "failed");
    assert_eq!(done["data"][0]["message"], kling::RISK_CONTROL);
    assert_eq!(done["data"][0]["outputs"], json!([]));
}

#[tokio::test]
async fn account_costs_checks_credentials_cheaply() {
    let s = sim(SimConfig::default()).await;
    let url = format!("{}/kling/account/costs?start_time=1726124664368&end_time=1727366400000", s.base_url);
    let ok = get(&url, Some(&bearer_jwt())).await;
    assert_eq!(ok.status, 200);
    let packs = &ok.json()["data"]["resource_pack_subscribe_infos"];
    assert!(packs[0]["remaining_quantity"].is_f64(), "{packs}");
    let bad = get(&url, Some("Bearer wrong")).await;
    assert_eq!((bad.status, bad.json()["code"].as_i64()), (401, Some(1002)));
    let no_times = get(&format!("{}/kling/account/costs", s.base_url), Some(KEY)).await;
    assert_eq!((no_times.status, no_times.json()["code"].as_i64()), (400, Some(1201)));
    assert_eq!(s.stats().credential_checks, 3);
    assert_eq!(s.stats().accepted, 0, "nothing billable");
}
