//! Deployments: the pure state machine and the transactional ingest around it.

mod app_cache;
pub mod ingest;
pub mod plan;
pub mod state;
