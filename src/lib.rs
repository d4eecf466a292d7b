//! # quantune
//!
//! The quantune binary's crate: it wires the search strategies (`quantune-strategies`) and the
//! store (`quantune-state`) into a daemon (`serve`), a foreground runner (`run`) and the CLI
//! client commands. Read in this order to follow a trial from `submit` to `leaderboard`:
//! [`study`] (the file), [`api::server`] (submit), [`engine`] (scheduling and recording),
//! [`executor::local`] (the process), [`leaderboard`] (the ranking).

pub mod api;
pub mod cli;
pub mod color;
pub mod commands;
pub mod config;
pub mod duration;
pub mod engine;
pub mod executor;
pub mod gpu;
pub mod gpu_monitor;
pub mod hardware;
pub mod host;
pub mod importance;
pub mod leaderboard;
pub mod metrics;
pub mod output;
pub mod plot;
pub mod progress;
pub mod results;
pub mod run;
pub mod serve;
pub mod slots;
pub mod study;
pub mod viz;
pub mod web;
pub mod workload;
