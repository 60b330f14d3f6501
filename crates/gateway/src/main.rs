//! The `vidgate` binary: the command line. An error is printed
//! once, on standard error; an interrupted command exits 130.

/// mimalloc instead of the system allocator: every request allocates and frees
/// small objects from two threads at once, where glibc's arenas spent a tenth of
/// the server's time (measured with `perf` under the poll benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Logging starts in `cli::run`, once the configuration says in which format.
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
