//! One integration binary: every test drives the real router against a fresh database.

mod github_fake;
mod helpers;
mod process;

mod api;
mod backfill;
mod browser;
mod cli;
mod concurrency;
mod faults;
mod hostile;
mod ops;
mod pages;
mod properties;
mod record;
mod replay;
mod schema;
mod statements;
mod stats;
mod sweep;
mod versions;
mod webhooks;
mod writers;
