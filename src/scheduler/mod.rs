//! The scheduler: the one owner of live state. See `docs/ARCHITECTURE.md`.

pub mod engine;
