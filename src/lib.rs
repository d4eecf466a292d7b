//! # quantune
//!
//! The quantune binary's crate: it wires the search strategies (`quantune-strategies`) and the
//! store (`quantune-state`) into a daemon (`serve`), a foreground runner (`run`) and the CLI
//! client commands. The code is grouped by who owns what (`docs/ARCHITECTURE.md` is the map):
//! [`model`] (study files, wire types, rules), [`scheduler`] (the one owner of live state),
//! [`executor`] (where trials run), [`workload`] (built-in trials), [`gpu`] (devices and
//! slots), [`daemon`] (serve, API, access, web), [`client`] (the CLI) and [`view`] (tables,
//! colours, plots).

pub mod client;
pub mod daemon;
pub mod executor;
pub mod gpu;
pub mod model;
pub mod notify;
pub mod scheduler;
pub mod secret;
pub mod signal;
pub mod tasks;
pub mod view;
pub mod workload;
