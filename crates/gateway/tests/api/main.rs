//! vidgate's integration suite: the real application over real HTTP, every test
//! on SQLite and on PostgreSQL.

#![expect(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod helpers;

mod admin;
mod catalog;
mod cli;
mod crash;
mod files;
mod health;
mod idempotency;
mod inputs;
mod money;
mod sim;
mod ssrf;
mod tasks;
mod upstream;
mod validation;
mod webhooks;
