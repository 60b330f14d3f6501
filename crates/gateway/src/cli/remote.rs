//! The client side of the command line: `vidgate generate`, `vidgate tasks
//! list|show|cancel` and `vidgate price`. Talks to the server named by VIDGATE_URL
//! with VIDGATE_API_KEY; API errors print the server's message and exit non-zero.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use vidgate_api::catalog::{Catalog, ImageListRole, KeepSoundField, Quality, Sound};
use vidgate_api::task::{TaskObject, TaskStatus};

use super::{Interrupted, output};
use crate::api_client::Client;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Server address.
    #[arg(long, env = "VIDGATE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key.
    #[arg(long, env = "VIDGATE_API_KEY", hide_env_values = true)]
    api_key: String,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Model id (`vidgate price --list` shows them); defaults to the Kling 3.0
    /// image-to-video model, or text-to-video with --text-only.
    #[arg(long)]
    model: Option<String>,
    /// First frame (JPG/PNG).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Last frame (JPG/PNG).
    #[arg(long)]
    end_image: Option<PathBuf>,
    /// A reference image (the model's `image_urls`); repeat for several.
    #[arg(long = "reference")]
    references: Vec<PathBuf>,
    /// The input video (MP4/MOV) of a video edit, reference or motion model.
    #[arg(long)]
    video: Option<PathBuf>,
    /// Keep the input video's sound.
    #[arg(long)]
    keep_original_sound: bool,
    /// Motion control: `image` or `video`.
    #[arg(long)]
    character_orientation: Option<String>,
    /// Text-to-video (no image).
    #[arg(long, conflicts_with_all = ["image", "end_image"])]
    text_only: bool,
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Seconds (each model has its range; models that follow their input video take none).
    #[arg(long)]
    duration: Option<u32>,
    /// 720p, 1080p or 4k, as the model allows.
    #[arg(long)]
    quality: Option<String>,
    /// on or off.
    #[arg(long)]
    sound: Option<String>,
    /// 16:9, 9:16 or 1:1, where the model takes it.
    #[arg(long)]
    aspect_ratio: Option<String>,
    /// Where to save the MP4 (default: <task id>.mp4).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// The newest tasks.
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// pending, processing, completed or failed.
        #[arg(long)]
        status: Option<String>,
    },
    /// One task as JSON.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
    },
    /// Cancel a task (full refund).
    Cancel {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct PriceArgs {
    #[arg(long, default_value = "kling-v3-image-to-video")]
    model: String,
    /// Seconds of video (default: the model's default duration).
    #[arg(long)]
    duration: Option<u32>,
    /// For models billed by their input video: its length in seconds.
    #[arg(long)]
    input_seconds: Option<u32>,
    #[arg(long, default_value = "720p")]
    quality: String,
    #[arg(long, default_value = "off")]
    sound: String,
    /// A configuration file whose `[catalog]` overrides apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// List every model with its billing instead.
    #[arg(long)]
    list: bool,
}

fn catalog(config: Option<&std::path::Path>) -> anyhow::Result<Catalog> {
    Ok(crate::config::Config::load(config, |_| None)?.load_catalog()?)
}

/// The offline price of `seconds` of `model` (a call, for per-call models).
fn estimate(
    catalog: &Catalog,
    model: &str,
    seconds: Option<u32>,
    quality: &str,
    sound: &str,
) -> anyhow::Result<vidgate_api::credits::Credits> {
    let spec = catalog.get(model).ok_or_else(|| anyhow::anyhow!("unknown model {model:?}"))?;
    let quality = Quality::parse(quality).ok_or_else(|| anyhow::anyhow!("quality must be 720p, 1080p or 4k"))?;
    let sound = Sound::parse(sound).ok_or_else(|| anyhow::anyhow!("sound must be on or off"))?;
    let seconds = match (seconds, &spec.duration) {
        (Some(s), _) => s,
        (None, Some(d)) => d.default,
        (None, None) if spec.video.is_some() => {
            anyhow::bail!("{model} bills its input video: give --input-seconds")
        }
        (None, None) => 0,
    };
    spec.price(quality, sound, seconds)
        .ok_or_else(|| anyhow::anyhow!("{model} is not made at {quality} with sound {sound}"))
}

fn price_line(c: vidgate_api::credits::Credits) -> String {
    format!("{c} credits (${:.3})", c.to_usd_f64())
}

pub fn price(args: &PriceArgs) -> anyhow::Result<()> {
    let catalog = catalog(args.config.as_deref())?;
    if args.list {
        for m in catalog.models() {
            let rule = m.pricing.rule().as_str();
            let estimated = if m.pricing.estimated() { " (estimated)" } else { "" };
            output::line(&format!("{:<32} {:<11} {}{estimated}", m.id, rule, m.name));
        }
        return Ok(());
    }
    let c = estimate(&catalog, &args.model, args.duration.or(args.input_seconds), &args.quality, &args.sound)?;
    output::line(&price_line(c));
    Ok(())
}

fn summary(t: &TaskObject) -> String {
    let mut s = format!("{}  {:<10} {:>3}%  {}", t.id, t.status.as_str(), t.progress, t.model);
    if let Some(e) = &t.error {
        s.push_str(&format!("  {}: {}", e.code.as_str(), e.message));
    }
    s
}

pub async fn tasks(cmd: TasksCommand) -> anyhow::Result<()> {
    match cmd {
        TasksCommand::List { server, limit, status } => {
            let client = Client::new(&server.url, &server.api_key)?;
            for t in client.list(limit, status.as_deref()).await?.data {
                output::line(&summary(&t));
            }
        }
        TasksCommand::Show { server, id } => {
            let client = Client::new(&server.url, &server.api_key)?;
            output::line(&serde_json::to_string_pretty(&client.task(&id).await?)?);
        }
        TasksCommand::Cancel { server, id } => {
            let client = Client::new(&server.url, &server.api_key)?;
            output::line(&summary(&client.cancel(&id).await?));
        }
    }
    Ok(())
}

/// Asks on the terminal whether to cancel; "y" or "yes" means yes.
async fn confirm_cancel(id: &str) -> bool {
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || {
        output::prompt(&format!("\nCancel task {id}? [y/N] "));
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
    })
    .await
    .unwrap_or(false)
}

pub async fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let model = args.model.clone().unwrap_or_else(|| {
        if args.text_only { "kling-v3-text-to-video" } else { "kling-v3-image-to-video" }.to_owned()
    });
    let catalog = catalog(None)?;
    let spec = catalog.get(&model);
    // The offline estimate; if the parameters are off, the server says exactly why.
    let quality = args.quality.clone().unwrap_or_else(|| "720p".to_owned());
    let sound = args.sound.clone().unwrap_or_else(|| "off".to_owned());
    if let Ok(cost) = estimate(&catalog, &model, args.duration, &quality, &sound) {
        output::line(&format!("Price: {} (models billed by their input video: on its length)", price_line(cost)));
    }
    let client = Client::new(&args.server.url, &args.server.api_key)?;
    let mut body = json!({ "model": model });
    for (field, value) in [
        ("prompt", &args.prompt),
        ("negative_prompt", &args.negative_prompt),
        ("quality", &args.quality),
        ("sound", &args.sound),
        ("aspect_ratio", &args.aspect_ratio),
    ] {
        if let Some(v) = value {
            body[field] = json!(v);
        }
    }
    if let Some(d) = args.duration {
        body["duration"] = json!(d);
    }
    // O1 image-to-video takes its frames as `image_urls`.
    let frames_in_list = spec.and_then(|s| s.image_urls.as_ref()).is_some_and(|l| l.role == ImageListRole::Frames);
    let mut image_urls = Vec::new();
    for (path, field) in [(&args.image, "image_start"), (&args.end_image, "image_end")] {
        if let Some(path) = path {
            let url = client.upload(path).await?.url;
            if frames_in_list {
                image_urls.push(Value::String(url));
            } else {
                body[field] = Value::String(url);
            }
        }
    }
    for path in &args.references {
        image_urls.push(Value::String(client.upload(path).await?.url));
    }
    if !image_urls.is_empty() {
        body["image_urls"] = Value::Array(image_urls);
    }
    if let Some(path) = &args.video {
        let url = client.upload(path).await?.url;
        match spec.and_then(|s| s.video.as_ref()).map(|v| v.field) {
            Some(vidgate_api::catalog::VideoField::VideoUrls) => body["video_urls"] = json!([url]),
            _ => body["video_url"] = json!(url),
        }
    }
    if args.keep_original_sound {
        match spec.and_then(|s| s.keep_sound.as_ref()).map(|k| k.field) {
            Some(KeepSoundField::ModelParamsKeepSound) => body["model_params"]["keep_sound"] = json!(true),
            _ => body["keep_original_sound"] = json!(true),
        }
    }
    if let Some(o) = &args.character_orientation {
        body["model_params"]["character_orientation"] = json!(o);
    }
    let task = client.create(&body).await?;
    output::line(&format!("Task {} created", task.id));
    let bar = indicatif::ProgressBar::new(100);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {pos:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut current = task;
    loop {
        bar.set_position(u64::from(current.progress));
        bar.set_message(current.status.as_str().to_owned());
        if current.status.is_final() {
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                if confirm_cancel(&current.id).await {
                    current = client.cancel(&current.id).await?;
                    bar.abandon_with_message("cancelled");
                    return Err(Interrupted(format!("Task {} cancelled; its credits were refunded.", current.id)).into());
                }
            }
            () = tokio::time::sleep(Duration::from_millis(750)) => {
                current = client.task(&current.id).await?;
            }
        }
    }
    match current.status {
        TaskStatus::Completed => {
            bar.finish_with_message("completed");
            let url =
                current.results.as_ref().and_then(|r| r.first()).ok_or_else(|| anyhow::anyhow!("no result link"))?;
            let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("{}.mp4", current.id)));
            let bytes = client.download(url, &out).await?;
            output::line(&format!("Saved {} ({bytes} bytes)", out.display()));
            Ok(())
        }
        _ => {
            bar.abandon_with_message("failed");
            let e = current.error.as_ref();
            anyhow::bail!(
                "task {} failed: {} ({})",
                current.id,
                e.map(|e| e.message.as_str()).unwrap_or("unknown error"),
                e.map(|e| e.code.as_str()).unwrap_or("unknown_error")
            )
        }
    }
}
