//! vidgate, the service as a library: the `vidgate` binary is a thin shell over
//! `cli::run`, and tests start the real application through `startup`.

pub mod accounts;
pub mod blobs;
pub mod cli;
pub mod cli_client;
pub mod client;
pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod metrics;
pub mod net;
pub mod output;
pub mod providers;
pub mod routing;
pub mod startup;
pub mod state;
pub mod store;
pub mod tasks;
pub mod util;
pub mod webhooks;
