//! The detector: a plain library that knows nothing about HTTP.

pub mod decode;
mod detector;
pub mod evidence;
pub mod fusion;
pub mod metadata;
pub mod provenance;
pub mod report;
pub mod source_type;

pub use decode::{DecodeError, DecodeLimits, ImageFormat};
pub use detector::{sha256_hex, DetectOptions, Detector, DetectorConfig};
pub use report::{Flag, Report, Verdict};
