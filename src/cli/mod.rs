//! Subcommands that work straight against the database (`DATABASE_URL`).

pub mod apps;
pub mod deliveries;
pub mod deployments;
pub mod export;
pub mod github;
pub mod replay;
pub mod reprocess;
