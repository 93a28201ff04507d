//! One integration binary: every test drives the real router against a fresh database.

mod helpers;
mod process;

mod api;
mod cli;
mod concurrency;
mod faults;
mod hostile;
mod ops;
mod properties;
mod replay;
mod schema;
mod webhooks;
mod writers;
