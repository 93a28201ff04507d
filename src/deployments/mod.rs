//! Deployments: the pure state machine and the transactional ingest around it.

pub mod ingest;
pub mod plan;
pub mod state;
