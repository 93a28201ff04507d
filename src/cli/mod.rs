//! Subcommands that work straight against the database (`DATABASE_URL`).

pub mod apps;
pub mod export;
pub mod replay;
pub mod reprocess;
