//! vidgate's integration suite: the real application over real HTTP, every test
//! on SQLite and on PostgreSQL.

#![expect(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod helpers;

mod admin;
mod admin_cli;
mod catalog;
mod cli;
mod codes;
mod crash;
mod files;
mod health;
mod idempotency;
mod inputs;
mod keys;
mod limits;
mod logs;
mod money;
mod operator;
mod replicas;
mod serving;
mod sim;
mod ssrf;
mod tasks;
mod upstream;
mod usage;
mod validation;
mod webhooks;
