//! One integration binary: every test drives the real router against a fresh database.

mod github_fake;
mod helpers;
mod process;

mod api;
mod backfill;
mod cli;
mod concurrency;
mod faults;
mod hostile;
mod ops;
mod properties;
mod record;
mod replay;
mod schema;
mod webhooks;
mod writers;
