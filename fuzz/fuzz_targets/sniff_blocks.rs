//! Fuzz target: format sniffing and the container walk (`read_blocks`: JPEG segments, PNG
//! chunks with zTXt/iTXt inflation, WebP RIFF chunks, HEIF boxes through libheif), without
//! decoding pixels. A panic, hang or abort here is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tellscan::forensics::decode::{read_blocks, ImageFormat};

fuzz_target!(|data: &[u8]| {
    if let Some(format) = ImageFormat::sniff(data) {
        let blocks = read_blocks(format, data);
        // every text the walk produced must be usable as text
        for chunk in &blocks.text_chunks {
            let _ = blocks.text(&chunk.keyword);
        }
        let _ = blocks.is_empty();
    }
});
