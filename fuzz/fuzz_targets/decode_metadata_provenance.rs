//! Fuzz target: any bytes through sniffing, the container walk, decoding with limits, the
//! metadata module and the C2PA reader. A panic, hang or abort here is a bug.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tellscan::forensics::decode::{decode, read_blocks, DecodeLimits, ImageFormat};
use tellscan::forensics::{metadata, Detector, DetectorConfig};

fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| Detector::new(&DetectorConfig::default()).expect("detector builds"))
}

fuzz_target!(|data: &[u8]| {
    // small limits keep each execution fast and exercise the TooLarge path
    let limits = DecodeLimits { max_pixels: 4_000_000, max_side: 4096 };
    if let Some(format) = ImageFormat::sniff(data) {
        let blocks = read_blocks(format, data);
        let _ = metadata::parse_exif(blocks.exif.as_deref());
        let _ = detector().provenance().inspect(format.mime(), data);
    }
    if let Ok(image) = decode(data, &limits) {
        let _ = metadata::analyse(&image);
    }
});
