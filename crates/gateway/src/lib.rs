//! vidgate, the service as a library: the `vidgate` binary is a thin shell over
//! `cli::run`, and tests start the real application through `startup`.
//!
//! Layers, each importing only those below it: `ids`, `secret`, `util`,
//! `config`, `error`, `job` and `limits` at the bottom; `store`, `blobs` and
//! `net`; then `providers`, `routing`, `files`, `tasks`, `webhooks`,
//! `accounts`, `codes`, `usage` and `engine`; `http` and `cli` on top. `state`
//! aggregates the services and `startup` assembles them.

pub mod accounts;
pub mod api_client;
pub mod blobs;
pub mod bootstrap;
pub mod cli;
pub mod codes;
pub mod config;
pub mod engine;
pub mod error;
pub mod files;
pub mod http;
pub mod ids;
pub mod job;
#[cfg(test)]
mod layering;
pub mod limits;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod net;
pub mod providers;
pub mod routing;
pub mod secret;
pub mod server;
pub mod startup;
pub mod state;
pub mod store;
pub mod tasks;
pub mod usage;
pub mod util;
pub mod webhooks;
