//! The daemon: `quantune serve` (store, scheduler, listeners, lifecycle), its HTTP API, who may
//! use it, its config file, the web page it serves, and `quantune run` (one study in the
//! foreground on the same scheduler).

pub mod access;
pub mod api;
pub mod config;
pub mod listen;
pub mod logs;
pub mod notifier;
pub mod run;
pub mod serve;
pub mod web;
