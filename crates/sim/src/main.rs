//! `vidgate-sim`: the stand-in upstream as a process, for manual runs and benchmarks. Knobs are
//! flags (fault flags after `--protocol NAME` apply to that protocol only); credentials come from
//! the environment (`SIM_KLING_ACCESS_KEY`, `SIM_KLING_SECRET_KEY`, `SIM_KLING_API_KEY`,
//! `SIM_FAL_KEY`, `SIM_REPLICATE_TOKEN`, `SIM_EVOLINK_KEY`), defaults as in `SimConfig`. Prints
//! its base URL, then serves until killed; `POST {base}/control/...` changes knobs while it runs.

use std::time::Duration;

use vidgate_sim::{Fault, Faults, Protocol, SimConfig};

const USAGE: &str = "usage: vidgate-sim [--listen 127.0.0.1:0] [--latency-ms N] [--polls N] [--seed N] [--video FILE]
  [--fail-message S] [--fal-failure TYPE] [--fal-retryable true|false] [--fal-no-data-uris] [--fal-inference-key]
  [--replicate-models owner/a,owner/b]
  fault flags, for every protocol or, after --protocol kling|fal|replicate|evolink, for that one:
  [--submit-fault F] [--submit-fault-rate R] [--poll-fault F] [--poll-fault-rate R]
  [--fail-rate R] [--refuse-rate R] [--stuck-rate R] [--bad-result-rate R] [--bad-body-rate R] [--down STATUS]
  F: a 4xx/5xx status, a Kling code 1000..5002 (at its documented status), 1303@200, malformed or hang
  at run time: POST /control/down/{protocol}/{status}, /control/up/{protocol},
  /control/set/{protocol}/{knob}/{rate} (knob: a rate flag without the dashes prefix)";

/// The fault knobs a flag writes to: the global ones, or one protocol's.
fn faults(c: &mut SimConfig, scope: Option<Protocol>) -> FaultsRef<'_> {
    match scope {
        Some(p) => FaultsRef::One(c.protocol(p)),
        None => FaultsRef::Global(c),
    }
}

enum FaultsRef<'a> {
    Global(&'a mut SimConfig),
    One(&'a mut Faults),
}

impl FaultsRef<'_> {
    fn set(self, flag: &str, value: FaultValue) -> Result<(), String> {
        match self {
            FaultsRef::One(f) => match (flag, value) {
                ("--submit-fault", FaultValue::Fault(v)) => f.submit_fault = v,
                ("--poll-fault", FaultValue::Fault(v)) => f.poll_fault = v,
                ("--submit-fault-rate", FaultValue::Rate(r)) => f.submit_fault_rate = r,
                ("--poll-fault-rate", FaultValue::Rate(r)) => f.poll_fault_rate = r,
                ("--fail-rate", FaultValue::Rate(r)) => f.fail_rate = r,
                ("--refuse-rate", FaultValue::Rate(r)) => f.refuse_rate = r,
                ("--stuck-rate", FaultValue::Rate(r)) => f.stuck_rate = r,
                ("--bad-result-rate", FaultValue::Rate(r)) => f.bad_result_rate = r,
                ("--bad-body-rate", FaultValue::Rate(r)) => f.bad_body_rate = r,
                ("--down", FaultValue::Status(s)) => f.down = Some(s),
                _ => return Err(format!("{flag}: not a fault flag")),
            },
            FaultsRef::Global(c) => match (flag, value) {
                ("--submit-fault", FaultValue::Fault(v)) => c.submit_fault = v,
                ("--poll-fault", FaultValue::Fault(v)) => c.poll_fault = v,
                ("--submit-fault-rate", FaultValue::Rate(r)) => c.submit_fault_rate = r,
                ("--poll-fault-rate", FaultValue::Rate(r)) => c.poll_fault_rate = r,
                ("--fail-rate", FaultValue::Rate(r)) => c.fail_rate = r,
                ("--refuse-rate", FaultValue::Rate(r)) => c.refuse_rate = r,
                ("--stuck-rate", FaultValue::Rate(r)) => c.stuck_rate = r,
                ("--bad-result-rate", FaultValue::Rate(r)) => c.bad_result_rate = r,
                ("--bad-body-rate", FaultValue::Rate(r)) => c.bad_body_rate = r,
                ("--down", FaultValue::Status(s)) => c.down = Some(s),
                _ => return Err(format!("{flag}: not a fault flag")),
            },
        }
        Ok(())
    }
}

enum FaultValue {
    Fault(Fault),
    Rate(f64),
    Status(u16),
}

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
    env("SIM_KLING_API_KEY", &mut c.kling_api_key);
    env("SIM_FAL_KEY", &mut c.fal_key);
    env("SIM_REPLICATE_TOKEN", &mut c.replicate_token);
    env("SIM_EVOLINK_KEY", &mut c.evolink_key);
    let mut scope = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        // Flags without a value.
        match flag.as_str() {
            "--fal-no-data-uris" => {
                c.fal_accept_data_uris = false;
                continue;
            }
            "--fal-inference-key" => {
                c.fal_key_admin = false;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let rate =
            || value.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)).ok_or(format!("{flag}: a rate in 0..=1"));
        let fault = || Fault::parse(value).ok_or(format!("{flag}: 4xx/5xx, a Kling code, 1303@200, malformed or hang"));
        let number = || value.parse::<u64>().map_err(|_| format!("{flag}: a whole number"));
        match flag.as_str() {
            "--listen" => listen = value.parse().map_err(|_| "--listen: an address like 127.0.0.1:9000")?,
            "--latency-ms" => c.latency = Duration::from_millis(number()?),
            "--polls" => c.polls_to_finish = u32::try_from(number()?).map_err(|_| "--polls: too large")?,
            "--seed" => c.seed = number()?,
            "--video" => c.video = std::fs::read(value).map_err(|e| format!("--video {value}: {e}"))?,
            "--fail-message" => c.fail_message = value.clone(),
            "--fal-failure" => {
                vidgate_sim::fal::error_type(value).ok_or(format!("--fal-failure: unknown fal error type {value}"))?;
                c.fal_failure = value.clone();
            }
            "--fal-retryable" => {
                c.fal_retryable = Some(value.parse::<bool>().map_err(|_| "--fal-retryable: true or false")?);
            }
            "--replicate-models" => c.replicate_models = value.split(',').map(str::to_owned).collect(),
            "--protocol" => {
                scope = Some(Protocol::parse(value).ok_or("--protocol: kling, fal, replicate or evolink")?);
            }
            "--submit-fault" | "--poll-fault" => faults(&mut c, scope).set(flag, FaultValue::Fault(fault()?))?,
            "--down" => {
                let status = value.parse::<u16>().ok().filter(|s| (400..600).contains(s));
                let status = status.ok_or("--down: a 4xx or 5xx status")?;
                faults(&mut c, scope).set(flag, FaultValue::Status(status))?;
            }
            "--submit-fault-rate"
            | "--poll-fault-rate"
            | "--fail-rate"
            | "--refuse-rate"
            | "--stuck-rate"
            | "--bad-result-rate"
            | "--bad-body-rate" => faults(&mut c, scope).set(flag, FaultValue::Rate(rate()?))?,
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
            #[expect(clippy::print_stdout, reason = "the base URL on stdout is this binary's interface")]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn fault_flags_after_protocol_apply_to_that_protocol_only() {
        let (_, c) = parse(&args(&[
            "--fail-rate",
            "0.1",
            "--protocol",
            "fal",
            "--down",
            "503",
            "--submit-fault",
            "1304",
            "--submit-fault-rate",
            "0.5",
        ]))
        .unwrap();
        assert_eq!(c.fail_rate, 0.1);
        assert_eq!(c.faults(Protocol::Fal).down, Some(503));
        assert_eq!(c.faults(Protocol::Fal).fail_rate, 0.1, "starts from the global knobs");
        assert_eq!(c.faults(Protocol::Fal).submit_fault, Fault::KlingCode(1304));
        assert_eq!(c.faults(Protocol::Kling).down, None);
        assert_eq!(c.faults(Protocol::Kling).submit_fault_rate, 0.0);
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&args(&["--down", "200"])).is_err());
        assert!(parse(&args(&["--protocol", "openai"])).is_err());
        assert!(parse(&args(&["--fal-failure", "made_up"])).is_err());
        assert!(parse(&args(&["--fail-rate", "2"])).is_err());
        let (_, c) = parse(&args(&["--fal-failure", "no_media_generated", "--fal-no-data-uris"])).unwrap();
        assert_eq!(c.fal_failure, "no_media_generated");
        assert!(!c.fal_accept_data_uris);
    }
}
