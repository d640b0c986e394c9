//! What builds and measures the weights rather than using them: the labelled sets, the
//! metrics, the preparation steps (normalisation, degradations, the web chain) shared by
//! `tellscan train`, `calibrate` and `eval`, the latent autoencoders and the aligned pairs they
//! make, the training of the `ml` module's network and
//! the fitting of the fusion (DESIGN §5: `forensics/` knows nothing of this room, and this
//! room imports nothing of `eval/`).

pub mod aligned;
pub mod balance;
pub mod calibration;
pub mod labels;
pub mod metrics;
pub mod taesd;
pub mod train;
pub mod transform;
pub mod web;
