//! Fuzz target: the generator-signature parsers (A1111 `parameters`, ComfyUI graphs, NovelAI,
//! InvokeAI, Fooocus, named generators, stealth alpha info). The input is `keyword NUL text`:
//! the text becomes a PNG text chunk under that keyword, an XMP packet and a JPEG comment, and,
//! when it looks like TIFF, the raw EXIF block; its bytes are also a one-pixel-wide alpha
//! channel, whose low bits the stealth reader follows. A panic, hang or abort here is a bug.
#![no_main]

use image::GrayImage;
use libfuzzer_sys::fuzz_target;
use tellscan::forensics::decode::{JpegInfo, MetadataBlocks, TextChunk};
use tellscan::forensics::metadata::generators::{family_from_model_name, find_generator};
use tellscan::forensics::metadata::parse_exif;

fuzz_target!(|data: &[u8]| {
    let (keyword, body) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (&b"parameters"[..], data),
    };
    let text = String::from_utf8_lossy(body).into_owned();
    let is_tiff = body.starts_with(b"II*\0") || body.starts_with(b"MM\0*");
    let blocks = MetadataBlocks {
        exif: is_tiff.then(|| body.to_vec()),
        xmp: vec![text.clone()],
        text_chunks: vec![TextChunk { keyword: String::from_utf8_lossy(keyword).into_owned(), text: text.clone() }],
        jpeg: Some(JpegInfo { comments: vec![text.clone()], ..JpegInfo::default() }),
        ..MetadataBlocks::default()
    };
    let exif = parse_exif(blocks.exif.as_deref());
    let alpha = (!body.is_empty()).then(|| GrayImage::from_raw(1, body.len() as u32, body.to_vec()));
    let finding = find_generator(&blocks, exif.as_ref(), alpha.flatten().as_ref());
    if let Some(finding) = finding {
        assert_eq!(finding.model.as_ref(), finding.models.first());
    }
    let _ = family_from_model_name(&text);
});
