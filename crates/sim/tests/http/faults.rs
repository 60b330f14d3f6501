//! The fault knobs over HTTP: a provider down and back, a listener that refuses connections and
//! listens again, hangs, malformed answers, poll faults, the seed, the control endpoints.

use std::time::Duration;

use serde_json::{Value, json};
use vidgate_sim::{Fault, Protocol, SimConfig};

use crate::{get, post, sim, try_send};

const KLING: &str = "Bearer kling-key-sim";
const FAL: &str = "Key fal-sim";

fn t2v() -> Value {
    json!({"model_name": "kling-v3", "prompt": "p", "duration": "5"})
}

fn fal_body() -> Value {
    json!({"prompt": "p", "duration": "5"})
}

#[tokio::test]
async fn a_provider_taken_down_answers_5xx_on_every_call_and_comes_back() {
    let s = sim(SimConfig::default()).await;
    let fal_submit = format!("{}/fal/fal-ai/kling-video/v3/standard/text-to-video", s.base_url);
    let queued = post(&fal_submit, Some(FAL), &fal_body()).await.json();
    s.set(|c| c.protocol(Protocol::Fal).down = Some(503));
    let down = post(&fal_submit, Some(FAL), &fal_body()).await;
    assert_eq!((down.status, down.header("x-fal-error-type")), (503, Some("runner_scheduling_failure")));
    let poll = get(queued["status_url"].as_str().unwrap(), Some(FAL)).await;
    assert_eq!(poll.status, 503, "polls too");
    let billing = get(&format!("{}/fal/v1/account/billing", s.base_url), Some(FAL)).await;
    assert_eq!(billing.status, 503, "and credential checks");
    let kling = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(KLING), &t2v()).await;
    assert_eq!(kling.status, 200, "the other providers stay up");
    s.set(|c| c.protocol(Protocol::Fal).down = None);
    assert_eq!(post(&fal_submit, Some(FAL), &fal_body()).await.status, 200);
    assert_eq!(get(queued["status_url"].as_str().unwrap(), Some(FAL)).await.json()["request_id"], queued["request_id"]);
    // Down everywhere, in each provider's own shape.
    s.set(|c| c.down = Some(500));
    let k = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(KLING), &t2v()).await;
    assert_eq!((k.status, k.json()["code"].as_i64()), (500, Some(5000)));
    let r = get(&format!("{}/replicate/v1/account", s.base_url), Some("Bearer r8-sim")).await;
    assert_eq!((r.status, r.header("content-type")), (500, Some("application/problem+json")));
    let e = get(&format!("{}/evolink/v1/credits", s.base_url), Some("Bearer sk-evo-sim")).await;
    assert_eq!((e.status, e.json()["error"]["code"].as_i64()), (500, Some(500)));
}

#[tokio::test]
async fn a_stopped_listener_refuses_connections_and_listens_again() {
    let s = sim(SimConfig { stuck_rate: 1.0, ..SimConfig::default() }).await;
    let url = format!("{}/kling/v1/videos/text2video", s.base_url);
    let id = post(&url, Some(KLING), &t2v()).await.json()["data"]["task_id"].as_str().unwrap().to_owned();
    assert!(s.is_listening());
    s.stop_listening().await;
    assert!(!s.is_listening());
    let refused = try_send("POST", &url, Some(KLING), Some(t2v().to_string().as_bytes())).await;
    let err = refused.err().expect("the connection is refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    s.start_listening().await.unwrap();
    let back = get(&format!("{url}/{id}"), Some(KLING)).await;
    assert_eq!(back.json()["data"]["task_id"], id, "tasks survive the outage");
}

#[tokio::test]
async fn stopping_drops_connections_that_hang() {
    let s = sim(SimConfig { poll_fault_rate: 1.0, poll_fault: Fault::Hang, ..SimConfig::default() }).await;
    let url = format!("{}/replicate/v1/account", s.base_url);
    // Credential checks are not polls: no hang.
    assert_eq!(get(&url, Some("Bearer r8-sim")).await.status, 200);
    let poll = format!("{}/replicate/v1/predictions/x", s.base_url);
    let hung = tokio::spawn(async move { try_send("GET", &poll, Some("Bearer r8-sim"), None).await });
    // Wait for the poll to be held, then take the host away.
    for _ in 0..200 {
        if s.stats().polls == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.stop_listening().await;
    let answer = hung.await.unwrap();
    assert!(answer.is_err(), "the held connection is closed, not answered");
}

#[tokio::test]
async fn a_hang_never_answers() {
    let s = sim(SimConfig { submit_fault_rate: 1.0, submit_fault: Fault::Hang, ..SimConfig::default() }).await;
    let url = format!("{}/kling/v1/videos/text2video", s.base_url);
    let body = t2v().to_string();
    let answered =
        tokio::time::timeout(Duration::from_millis(300), try_send("POST", &url, Some(KLING), Some(body.as_bytes())))
            .await;
    assert!(answered.is_err(), "no answer came");
    assert_eq!(s.stats().accepted, 0);
}

#[tokio::test]
async fn malformed_answers_are_http_200_but_not_json() {
    let s = sim(SimConfig { poll_fault_rate: 1.0, poll_fault: Fault::Malformed, ..SimConfig::default() }).await;
    let v = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(KLING), &t2v()).await.json();
    let id = v["data"]["task_id"].as_str().unwrap();
    let a = get(&format!("{}/kling/v1/videos/text2video/{id}", s.base_url), Some(KLING)).await;
    assert_eq!((a.status, a.header("content-type")), (200, Some("application/json")));
    assert!(serde_json::from_slice::<Value>(&a.body).is_err());
    assert_eq!(s.stats().faults, 1);
}

#[tokio::test]
async fn per_protocol_faults_leave_the_others_alone() {
    let mut c = SimConfig::default();
    let k = c.protocol(Protocol::Kling);
    k.submit_fault_rate = 1.0;
    k.submit_fault = Fault::KlingCode(1304);
    let s = sim(c).await;
    let kling = post(&format!("{}/kling/v1/videos/text2video", s.base_url), Some(KLING), &t2v()).await;
    assert_eq!((kling.status, kling.json()["code"].as_i64()), (429, Some(1304)));
    let fal =
        post(&format!("{}/fal/fal-ai/kling-video/v3/pro/text-to-video", s.base_url), Some(FAL), &fal_body()).await;
    assert_eq!(fal.status, 200);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults() {
    async fn outcomes(seed: u64) -> Vec<u16> {
        let s = sim(SimConfig { submit_fault_rate: 0.5, seed, ..SimConfig::default() }).await;
        let url = format!("{}/kling/v1/videos/text2video", s.base_url);
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(post(&url, Some(KLING), &t2v()).await.status);
        }
        out
    }
    let a = outcomes(11).await;
    assert_eq!(a, outcomes(11).await);
    assert!(a.contains(&200) && a.contains(&503), "{a:?}");
    assert_ne!(a, outcomes(12).await, "another seed, other dice");
}

#[tokio::test]
async fn tasks_finish_on_the_configured_poll_and_stuck_ones_never() {
    let s = sim(SimConfig { polls_to_finish: 4, ..SimConfig::default() }).await;
    let url = format!("{}/kling/v1/videos/text2video", s.base_url);
    let id = post(&url, Some(KLING), &t2v()).await.json()["data"]["task_id"].as_str().unwrap().to_owned();
    let statuses: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            let a = get(&format!("{url}/{id}"), Some(KLING)).await.json();
            v.push(a["data"]["task_status"].as_str().unwrap().to_owned());
        }
        v
    };
    assert_eq!(statuses, ["submitted", "processing", "processing", "succeed"]);
    s.set(|c| c.stuck_rate = 1.0);
    let stuck = post(&url, Some(KLING), &t2v()).await.json()["data"]["task_id"].as_str().unwrap().to_owned();
    for _ in 0..10 {
        let a = get(&format!("{url}/{stuck}"), Some(KLING)).await.json();
        assert_ne!(a["data"]["task_status"], "succeed");
    }
    assert_eq!(s.task_count(), 2);
}

#[tokio::test]
async fn bad_results_are_links_to_files_that_are_not_videos() {
    let s = sim(SimConfig { bad_result_rate: 1.0, polls_to_finish: 1, ..SimConfig::default() }).await;
    let t = post(
        &format!("{}/evolink/v1/videos/generations", s.base_url),
        Some("Bearer sk-evo-sim"),
        &json!({"model": "kling-v3-text-to-video", "prompt": "p"}),
    )
    .await
    .json();
    let done =
        get(&format!("{}/evolink/v1/tasks/{}", s.base_url, t["id"].as_str().unwrap()), Some("Bearer sk-evo-sim"))
            .await
            .json();
    let file = get(done["results"][0].as_str().unwrap(), None).await;
    assert_eq!(file.header("content-type"), Some("text/html"));
}

#[tokio::test]
async fn the_control_endpoints_steer_a_running_sim() {
    let s = sim(SimConfig::default()).await;
    let fal_submit = format!("{}/fal/fal-ai/kling-video/v3/pro/text-to-video", s.base_url);
    assert_eq!(post(&format!("{}/control/down/fal/502", s.base_url), None, &json!({})).await.status, 204);
    assert_eq!(post(&fal_submit, Some(FAL), &fal_body()).await.status, 502);
    assert_eq!(post(&format!("{}/control/up/fal", s.base_url), None, &json!({})).await.status, 204);
    assert_eq!(post(&fal_submit, Some(FAL), &fal_body()).await.status, 200);
    assert_eq!(post(&format!("{}/control/set/kling/refuse-rate/1", s.base_url), None, &json!({})).await.status, 204);
    assert_eq!(s.config().faults(Protocol::Kling).refuse_rate, 1.0);
    assert_eq!(post(&format!("{}/control/down/openai/503", s.base_url), None, &json!({})).await.status, 404);
    let stats = get(&format!("{}/stats", s.base_url), None).await.json();
    assert_eq!(stats["endpoints"]["fal:fal-ai/kling-video/v3/pro/text-to-video"], 2);
    assert_eq!(stats["by_protocol"]["fal"], 1);
}
