//! The `vidgate` binary: logging, then the command line. An error is printed
//! once, on standard error; an interrupted command exits 130.

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match vidgate::cli::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<vidgate::cli::Interrupted>() {
            Some(i) => {
                eprintln!("{i}");
                std::process::ExitCode::from(130)
            }
            None => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
