//! What builds and measures the weights rather than using them: the web chain shared by
//! `tellscan train` and `tellscan eval`, and the training of the `ml` module's network
//! (DESIGN §5: `forensics/` knows nothing of this room).

pub mod calibration;
pub mod train;
pub mod web;
