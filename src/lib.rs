//! deploy-tracker: verified GitHub and Vercel webhooks become an exact history of
//! deployments.
//!
//! The path of a delivery, in order: [`http::webhooks`] (extract and verify),
//! [`webhooks::signature`], [`webhooks::github`] / [`webhooks::vercel`] (typed
//! payload → [`webhooks::Event`]), [`deployments::ingest`] (one transaction), and
//! [`deployments::state`] (the pure state machine).

pub mod backfill;
pub mod cli;
pub mod clients;
pub mod config;
pub mod deployments;
pub mod http;
pub mod replay;
pub mod simulate;
pub mod store;
pub mod webhooks;
