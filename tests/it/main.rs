//! One integration binary: every test drives the real router against a fresh database.

mod helpers;
mod process;

mod api;
mod browser;
mod cli;
mod concurrency;
mod faults;
mod hostile;
mod ops;
mod pages;
mod properties;
mod replay;
mod schema;
mod stats;
mod webhooks;
