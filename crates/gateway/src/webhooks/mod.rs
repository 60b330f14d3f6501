//! Callbacks the Standard Webhooks way: `signing` (secrets and signatures) and
//! `dispatcher` (the outbox's sender, with retries and per-host limits).

mod dispatcher;
mod signing;

pub use dispatcher::{Dispatcher, run_dispatcher};
pub use signing::{current_secret, new_secret, rotate_secret, sign, signature_header};
