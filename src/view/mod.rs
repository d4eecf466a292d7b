//! Presentation shared by the client and the daemon's web page: text/CSV tables, terminal
//! colours, line widths, and plots (SVG/PNG). Pure rendering from model types; no I/O beyond
//! writing files.

pub mod color;
pub mod markup;
pub mod plot;
pub mod table;
pub mod width;
