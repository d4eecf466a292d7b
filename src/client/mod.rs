//! The client: every CLI command, talking to the daemon only through its HTTP API
//! ([`http`]). Nothing here imports daemon code.

pub mod api;
pub mod cli;
pub mod commands;
pub mod examples;
pub mod http;
pub mod import;
pub mod notify;
pub mod output;
pub mod progress;
pub mod viz;
