//! Fuzz target: the EXIF, XMP and PNG-text parsers on their raw payloads. The input is read
//! three ways: as a raw EXIF (TIFF) block through `parse_exif` and the camera checks, as an
//! XMP packet through the property and IPTC source-type readers, and as the body of a PNG
//! `tEXt`, `zTXt` and `iTXt` chunk in a minimal PNG walked by `read_blocks`. A panic, hang or
//! abort here is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tellscan::forensics::decode::{read_blocks, ImageFormat};
use tellscan::forensics::metadata::{camera, parse_exif, xmp};
use tellscan::forensics::source_type::DigitalSourceType;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A PNG with an IHDR, one chunk of `kind` holding `body` (CRC left zero: the walk does not
/// check it, as decoders do not), and an IEND.
fn png_with_chunk(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut png = PNG_SIGNATURE.to_vec();
    let mut chunk = |kind: &[u8], body: &[u8]| {
        png.extend_from_slice(&(body.len() as u32).to_be_bytes());
        png.extend_from_slice(kind);
        png.extend_from_slice(body);
        png.extend_from_slice(&[0; 4]);
    };
    chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
    chunk(kind, body);
    chunk(b"IEND", &[]);
    png
}

fuzz_target!(|data: &[u8]| {
    if let Some(exif) = parse_exif(Some(data)) {
        let evidence = camera::examine(&exif, 64, 48);
        let _ = evidence.is_coherent_capture();
        let _ = camera::file_metadata(Some(&exif), evidence.camera, None, 64, 48);
    }

    let packets = vec![String::from_utf8_lossy(data).into_owned()];
    for name in ["xmp:CreatorTool", "dc:creator", "photoshop:Credit", "Iptc4xmpExt:DigitalSourceType"] {
        if let Some(value) = xmp::property(&packets, name) {
            let _ = camera::editor_in(value);
        }
    }
    let _ = DigitalSourceType::find_all(&packets[0]);

    for kind in [b"tEXt", b"zTXt", b"iTXt"] {
        let png = png_with_chunk(kind, data);
        debug_assert_eq!(ImageFormat::sniff(&png), Some(ImageFormat::Png));
        let _ = read_blocks(ImageFormat::Png, &png);
    }
});
