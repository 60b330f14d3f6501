//! The command-line client against a real server: price, generate (text and
//! image), tasks list, and an API error that exits non-zero.

use std::process::{Command, Output};

use crate::helpers::{Backend, TestApp, png};

async fn vidgate(app: &TestApp, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidgate"));
    cmd.args(args).env("VIDGATE_URL", &app.address).env("VIDGATE_API_KEY", &app.api_key).env("RUST_LOG", "off");
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prices_generates_lists_and_reports_errors() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let dir = tempfile::tempdir().unwrap();

    let out = vidgate(&app, &["price", "--duration", "5"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "27 credits ($0.375)");
    let out = vidgate(&app, &["price", "--duration", "15", "--quality", "1080p"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "107.973 credits ($1.500)");

    let mp4 = dir.path().join("t2v.mp4");
    let out = vidgate(
        &app,
        &["generate", "--text-only", "--prompt", "rain on a window", "--duration", "3", "--out", mp4.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Price: 16.2 credits"), "{}", text(&out));
    let info = vidgate_render::inspect::inspect(&std::fs::read(&mp4).unwrap()).unwrap();
    assert_eq!(info.video_frames, 72);

    let start = dir.path().join("start.png");
    std::fs::write(&start, png(500, 400)).unwrap();
    let mp4b = dir.path().join("i2v.mp4");
    let out = vidgate(
        &app,
        &[
            "generate",
            "--image",
            start.to_str().unwrap(),
            "--prompt",
            "pan left",
            "--duration",
            "3",
            "--out",
            mp4b.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let info = vidgate_render::inspect::inspect(&std::fs::read(&mp4b).unwrap()).unwrap();
    assert_eq!((info.width, info.height), (900, 720));

    let out = vidgate(&app, &["tasks", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("completed")).count(), 2);

    let out = vidgate(&app, &["generate", "--text-only", "--prompt", "x", "--duration", "2"]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("duration must be an integer from 3 to 15"), "{}", text(&out));
    assert!(text(&out).contains("(field: duration)"), "{}", text(&out));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prices_every_model_and_edits_a_video() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let out = vidgate(&app, &["price", "--list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 13, "{}", text(&out));
    let out = vidgate(&app, &["price", "--model", "kling-o1-video-edit", "--input-seconds", "5"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "60 credits ($0.833)", "{}", text(&out));
    let out = vidgate(&app, &["price", "--model", "kling-custom-element"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1 credits ($0.014)", "{}", text(&out));
    let out = vidgate(&app, &["price", "--model", "kling-o3-video-edit"]).await;
    assert!(!out.status.success() && text(&out).contains("--input-seconds"), "{}", text(&out));

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    std::fs::write(&input, crate::helpers::clip("a city square", 720, 3, false)).unwrap();
    let out_file = dir.path().join("out.mp4");
    let out = vidgate(
        &app,
        &[
            "generate",
            "--model",
            "kling-o3-video-edit",
            "--prompt",
            "make it winter",
            "--video",
            input.to_str().unwrap(),
            "--out",
            out_file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let info = vidgate_render::inspect::inspect(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(info.video_frames, 72, "the edit follows the 3 s input");
}
