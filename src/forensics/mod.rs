//! The detector: a plain library that knows nothing about HTTP.

pub mod decode;
mod detector;
pub mod evidence;
pub mod families;
pub mod frequency;
pub mod fusion;
pub mod metadata;
pub mod ml;
pub mod overlay;
pub mod physics;
pub mod provenance;
pub mod report;
pub mod source_type;
pub mod views;
pub mod visual;
pub mod weights;

pub use decode::{DecodeError, DecodeLimits, ImageFormat};
pub use detector::{sha256_hex, Analysis, DetectOptions, Detector, DetectorConfig, DEFAULT_FUSION};
pub use report::{Flag, Report, Verdict};
