//! `vidgate-sim`: the stand-in upstream as a process, for manual runs and
//! benchmarks. Knobs are flags; credentials come from the environment
//! (`SIM_KLING_ACCESS_KEY`, `SIM_KLING_SECRET_KEY`, `SIM_FAL_KEY`,
//! `SIM_REPLICATE_TOKEN`), defaults as in `SimConfig`. Prints its base URL, then
//! serves until killed.

use std::time::Duration;

use vidgate_sim::{Fault, SimConfig};

const USAGE: &str = "usage: vidgate-sim [--listen 127.0.0.1:0] [--latency-ms N] [--polls N]
  [--submit-fault 429|503|1303|malformed|hang] [--submit-fault-rate R]
  [--poll-fault KIND] [--poll-fault-rate R] [--fail-rate R] [--fail-message S]
  [--stuck-rate R] [--bad-result-rate R] [--seed N] [--video FILE]";

fn parse(args: &[String]) -> Result<(std::net::SocketAddr, SimConfig), String> {
    let mut c = SimConfig::default();
    let mut listen: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let env = |k: &str, v: &mut String| {
        if let Ok(x) = std::env::var(k) {
            *v = x;
        }
    };
    env("SIM_KLING_ACCESS_KEY", &mut c.kling_access_key);
    env("SIM_KLING_SECRET_KEY", &mut c.kling_secret_key);
    env("SIM_FAL_KEY", &mut c.fal_key);
    env("SIM_REPLICATE_TOKEN", &mut c.replicate_token);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let rate =
            || value.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)).ok_or(format!("{flag}: a rate in 0..=1"));
        let fault = || Fault::parse(value).ok_or(format!("{flag}: 4xx/5xx, 1303, malformed or hang"));
        let number = || value.parse::<u64>().map_err(|_| format!("{flag}: a whole number"));
        match flag.as_str() {
            "--listen" => listen = value.parse().map_err(|_| "--listen: an address like 127.0.0.1:9000")?,
            "--latency-ms" => c.latency = Duration::from_millis(number()?),
            "--polls" => c.polls_to_finish = u32::try_from(number()?).map_err(|_| "--polls: too large")?,
            "--submit-fault" => c.submit_fault = fault()?,
            "--submit-fault-rate" => c.submit_fault_rate = rate()?,
            "--poll-fault" => c.poll_fault = fault()?,
            "--poll-fault-rate" => c.poll_fault_rate = rate()?,
            "--fail-rate" => c.fail_rate = rate()?,
            "--fail-message" => c.fail_message = value.clone(),
            "--stuck-rate" => c.stuck_rate = rate()?,
            "--bad-result-rate" => c.bad_result_rate = rate()?,
            "--seed" => c.seed = number()?,
            "--video" => c.video = std::fs::read(value).map_err(|e| format!("--video {value}: {e}"))?,
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok((listen, c))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        eprintln!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    let (listen, config) = match parse(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vidgate-sim: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match vidgate_sim::spawn_on(listen, config).await {
        Ok(sim) => {
            // The one line a driving script reads.
            #[expect(clippy::print_stdout, reason = "the base URL on stdout is the interface to scripts")]
            {
                println!("{}", sim.base_url);
            }
            let _ = tokio::signal::ctrl_c().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vidgate-sim: cannot listen on {listen}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
