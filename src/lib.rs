//! tellscan: tells whether an image was made by a generative model, and why.
//!
//! The detector is a plain library in [`forensics`]; the command-line tool in [`cli`]
//! and (later) the HTTP service are thin layers over it.

pub mod cli;
pub mod eval;
pub mod forensics;
