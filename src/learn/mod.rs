//! What builds and measures the weights rather than using them: the web chain shared by
//! `tellscan train` and `tellscan eval` (DESIGN §5: `forensics/` knows nothing of this room).

pub mod calibration;
pub mod web;
