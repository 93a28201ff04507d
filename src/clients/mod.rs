//! Outbound API clients: typed requests, typed answers and typed errors.

pub mod vercel;
