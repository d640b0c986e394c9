//! Bad input never panics: each case yields its typed error, or a report whose affected
//! module abstains.

mod common;

use common::*;
use tellscan::forensics::decode::{decode, DecodeError, DecodeLimits};
use tellscan::forensics::{Flag, ImageFormat};

fn expect_corrupt_or_report(bytes: &[u8], what: &str) {
    match detector().detect(bytes) {
        Ok(report) => assert!(report.score >= 0.0 && report.score <= 100.0, "{what}"),
        Err(DecodeError::Corrupt(reason)) => assert!(!reason.is_empty(), "{what}"),
        Err(other) => panic!("{what}: unexpected error {other:?}"),
    }
}

#[test]
fn zero_bytes_is_unsupported_media() {
    assert_eq!(detector().detect(&[]).unwrap_err(), DecodeError::UnsupportedMedia);
    let empty = read_shared("fixtures/metadata/sd-parsers/bad_images/empty_file.png");
    assert_eq!(detector().detect(&empty).unwrap_err(), DecodeError::UnsupportedMedia);
}

#[test]
fn random_bytes_are_unsupported_and_random_bytes_behind_a_magic_are_corrupt() {
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    assert_eq!(detector().detect(&noise).unwrap_err(), DecodeError::UnsupportedMedia);
    for magic in [&b"\xFF\xD8\xFF\xE0"[..], b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x10\x00\x00WEBPVP8 "] {
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(&noise);
        assert!(matches!(detector().detect(&bytes), Err(DecodeError::Corrupt(_))), "{magic:?}");
    }
    for ftyp in [&b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"[..], b"\0\0\0\x18ftypavif\0\0\0\0avifmif1"] {
        let mut bytes = ftyp.to_vec();
        bytes.extend_from_slice(&noise);
        assert!(matches!(detector().detect(&bytes), Err(DecodeError::Corrupt(_))), "{ftyp:?}");
    }
}

#[test]
fn truncated_files_of_every_format_fail_cleanly() {
    let jpeg = encode(&picture(300, 200), image::ImageFormat::Jpeg);
    let png = encode(&picture(300, 200), image::ImageFormat::Png);
    let webp = encode(&picture(300, 200), image::ImageFormat::WebP);
    let heic = read_shared("fixtures/heic/IMG_5195.HEIC");
    let avif = read_fixture("libheif-example.avif");
    for (name, bytes) in [("jpeg", &jpeg), ("png", &png), ("webp", &webp), ("heic", &heic), ("avif", &avif)] {
        for cut in [20, 40, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            expect_corrupt_or_report(&bytes[..cut], &format!("{name} cut at {cut}"));
        }
    }
}

#[test]
fn truncated_real_photo_still_decodes_or_fails_cleanly() {
    let photo = read_shared("fixtures/c2pa/IMG_0003.jpg");
    expect_corrupt_or_report(&photo[..photo.len() / 2], "camera JPEG cut in half");
}

#[test]
fn png_declaring_huge_dimensions_is_too_large_before_allocation() {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(png_chunk(b"IEND", &[]));
    match detector().detect(&png) {
        Err(DecodeError::TooLarge { width, height, .. }) => assert_eq!((width, height), (100_000, 100_000)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn heif_and_avif_over_the_limits_are_too_large_by_their_declared_size() {
    let avif = read_fixture("libheif-example.avif");
    let heic = read_shared("fixtures/heic/IMG_5195.HEIC");
    for (name, bytes, size) in [("avif", &avif, (800, 533)), ("heic", &heic, (2566, 3313))] {
        let narrow = DecodeLimits { max_pixels: 64_000_000, max_side: 500 };
        match decode(bytes, &narrow) {
            Err(DecodeError::TooLarge { width, height, .. }) => assert_eq!((width, height), size, "{name}"),
            other => panic!("{name}: expected TooLarge, got {other:?}"),
        }
        let few = DecodeLimits { max_pixels: 100_000, max_side: 16_384 };
        assert!(matches!(decode(bytes, &few), Err(DecodeError::TooLarge { .. })), "{name}");
    }
}

#[test]
fn decompression_bomb_within_the_side_limit_is_refused_by_pixel_count() {
    // 12000 x 12000 = 144 MP, each side under 16384, a few hundred bytes on disk
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&12_000u32.to_be_bytes());
    ihdr.extend_from_slice(&12_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(png_chunk(b"IEND", &[]));
    assert!(matches!(detector().detect(&png), Err(DecodeError::TooLarge { .. })));
    let tight = DecodeLimits { max_pixels: 1000, max_side: 16_384 };
    let small = encode(&picture(40, 40), image::ImageFormat::Png);
    assert!(matches!(decode(&small, &tight), Err(DecodeError::TooLarge { .. })));
}

#[test]
fn ztxt_bomb_is_truncated_not_inflated_whole() {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![b'A'; 1 << 20];
    for _ in 0..64 {
        std::io::Write::write_all(&mut z, &block).unwrap();
    }
    let compressed = z.finish().unwrap(); // 64 MiB of text in ~64 KiB
    let mut data = b"Comment\0\0".to_vec();
    data.extend_from_slice(&compressed);
    let png = encode(&picture(64, 64), image::ImageFormat::Png);
    let mut bomb = png[..png.len() - 12].to_vec();
    bomb.extend(png_chunk(b"zTXt", &data));
    bomb.extend_from_slice(&png[png.len() - 12..]);
    let image = decode(&bomb, &DecodeLimits::default()).unwrap();
    let text = image.blocks.text("Comment").unwrap();
    assert!(text.len() <= 8 * 1024 * 1024, "inflated {} bytes", text.len());
}

#[test]
fn jpeg_renamed_png_is_sniffed_as_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.png");
    std::fs::write(&path, encode(&picture(64, 64), image::ImageFormat::Jpeg)).unwrap();
    let report = detector().detect(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(report.image.format, ImageFormat::Jpeg);
}

#[test]
fn malformed_exif_and_xmp_are_ignored_not_fatal() {
    let jpeg = encode(&picture(64, 64), image::ImageFormat::Jpeg);
    let mut bad_exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\xFF\xFF".to_vec();
    bad_exif.extend_from_slice(&[0xAB; 64]);
    let bytes = jpeg_with_segment(&jpeg, 0xE1, &bad_exif);
    let report = detector().detect(&bytes).unwrap();
    assert!(report.modules["metadata"].score.is_finite());

    let mut bad_xmp = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    bad_xmp.extend_from_slice(b"<x:xmpmeta><rdf:RDF><rdf:Description xmp:CreatorTool=\"unterminated");
    let bytes = jpeg_with_segment(&jpeg, 0xE1, &bad_xmp);
    assert!(detector().detect(&bytes).is_ok());

    // a segment length that runs past the end of the file
    let mut overrun = jpeg[..2].to_vec();
    overrun.extend_from_slice(&[0xFF, 0xE1, 0xFF, 0xF0, b'E', b'x']);
    expect_corrupt_or_report(&overrun, "overrunning APP1");
}

#[test]
fn malformed_c2pa_stores_make_provenance_abstain() {
    for file in ["no_alg.jpg", "prerelease.jpg"] {
        let bytes = read_shared(&format!("fixtures/c2pa/{file}"));
        let report = detector().detect(&bytes).unwrap();
        let p = &report.modules["provenance"];
        assert!(p.abstained, "{file}: {p:?}");
        assert!(p.flags.contains(&Flag::C2paUnreadable), "{file}: {p:?}");
    }
    let svg = read_shared("fixtures/c2pa/sample3.svg");
    assert_eq!(detector().detect(&svg).unwrap_err(), DecodeError::UnsupportedMedia);
}
