//! tellscan: tells whether an image was made by a generative model, and why.
//!
//! The detector is a plain library in [`forensics`]; the command-line tool in [`cli`], the
//! HTTP service in [`http`] and its web page in [`studio`] are thin layers over it.

pub mod analyses;
pub mod auth;
pub mod cli;
pub mod config;
pub mod eval;
pub mod forensics;
mod hexid;
pub mod http;
pub mod learn;
pub mod outbound;
pub mod pool;
pub mod quota;
pub mod store;
pub mod studio;
