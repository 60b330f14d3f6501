//! The client side of the command line: `vidgate generate`, `vidgate tasks
//! list|show|cancel` and `vidgate price`. Talks to the server named by VIDGATE_URL
//! with VIDGATE_API_KEY; API errors print the server's message and exit non-zero.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use vidgate_api::catalog::{ModelId, Quality, Sound, price as catalog_price};
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
    /// First frame (JPG/PNG); image-to-video.
    #[arg(long, required_unless_present = "text_only")]
    image: Option<PathBuf>,
    /// Last frame (JPG/PNG).
    #[arg(long)]
    end_image: Option<PathBuf>,
    /// Text-to-video (no image).
    #[arg(long, conflicts_with_all = ["image", "end_image"])]
    text_only: bool,
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Seconds, 3..=15.
    #[arg(long, default_value_t = 5)]
    duration: u32,
    /// 720p or 1080p.
    #[arg(long, default_value = "720p")]
    quality: String,
    /// on or off.
    #[arg(long, default_value = "off")]
    sound: String,
    /// Text-to-video only: 16:9, 9:16 or 1:1.
    #[arg(long)]
    aspect_ratio: Option<String>,
    /// Model id (defaults to the Kling 3.0 model for the mode).
    #[arg(long)]
    model: Option<String>,
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
    #[arg(long, default_value_t = 5)]
    duration: u32,
    #[arg(long, default_value = "720p")]
    quality: String,
    #[arg(long, default_value = "off")]
    sound: String,
}

fn estimate(model: &str, duration: u32, quality: &str, sound: &str) -> anyhow::Result<vidgate_api::credits::Credits> {
    let model = ModelId::parse(model).ok_or_else(|| anyhow::anyhow!("unknown model {model:?}"))?;
    let quality = Quality::parse(quality).ok_or_else(|| anyhow::anyhow!("quality must be 720p or 1080p"))?;
    let sound = Sound::parse(sound).ok_or_else(|| anyhow::anyhow!("sound must be on or off"))?;
    if !(3..=15).contains(&duration) {
        anyhow::bail!("duration must be 3 to 15 seconds");
    }
    Ok(catalog_price(model, quality, sound, duration))
}

fn price_line(c: vidgate_api::credits::Credits) -> String {
    format!("{c} credits (${:.3})", c.to_usd_f64())
}

pub fn price(args: &PriceArgs) -> anyhow::Result<()> {
    let c = estimate(&args.model, args.duration, &args.quality, &args.sound)?;
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
    // The offline estimate; if the parameters are off, the server says exactly why.
    if let Ok(cost) = estimate(&model, args.duration, &args.quality, &args.sound) {
        output::line(&format!("Price: {}", price_line(cost)));
    }
    let client = Client::new(&args.server.url, &args.server.api_key)?;
    let mut body = json!({ "model": model, "duration": args.duration, "quality": args.quality, "sound": args.sound });
    if let Some(p) = &args.prompt {
        body["prompt"] = json!(p);
    }
    if let Some(n) = &args.negative_prompt {
        body["negative_prompt"] = json!(n);
    }
    if let Some(a) = &args.aspect_ratio {
        body["aspect_ratio"] = json!(a);
    }
    for (path, field) in [(&args.image, "image_start"), (&args.end_image, "image_end")] {
        if let Some(path) = path {
            let file = client.upload(path).await?;
            body[field] = Value::String(file.url);
        }
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
