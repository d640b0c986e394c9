//! The metadata blocks of a file, collected once while decoding and shared by every module.
//!
//! Each container is walked by a small bounded parser here rather than through the pixel
//! decoder, because decoders skip what they do not need (PNG text after `IDAT`, JPEG
//! quantisation tables, WebP `EXIF` chunks) and because a malformed block must never stop
//! the pixels from being analysed.

use std::io::Read;

/// Largest inflated size of one compressed PNG text chunk; bigger chunks are truncated
/// so that a zTXt "zip bomb" cannot exhaust memory.
const MAX_INFLATED_TEXT: u64 = 8 * 1024 * 1024;
/// Upper bound on the number of container chunks or segments walked in one file.
const MAX_CHUNKS: usize = 100_000;

/// A PNG text chunk (`tEXt`, `zTXt` or `iTXt`), already decompressed and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunk {
    /// The chunk's keyword, e.g. `parameters`, `prompt`, `Software`.
    pub keyword: String,
    /// The chunk's text (Latin-1 for tEXt/zTXt, UTF-8 for iTXt).
    pub text: String,
}

/// One JPEG quantisation table in natural (row-major) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantTable {
    /// Table slot 0-3 as declared in the DQT segment.
    pub id: u8,
    /// 64 coefficients in natural 8×8 order (de-zigzagged).
    pub values: [u16; 64],
}

/// What the JPEG bitstream tells about its own encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JpegInfo {
    /// Quantisation tables in declaration order (the last definition of a slot wins).
    pub quant_tables: Vec<QuantTable>,
    /// `true` for a progressive (SOF2/SOF6/SOF10/SOF14) frame.
    pub progressive: bool,
    /// Frame width and height from the SOF segment.
    pub frame_size: Option<(u32, u32)>,
    /// `COM` segment texts.
    pub comments: Vec<String>,
}

impl JpegInfo {
    /// The luminance quantisation table (slot 0), if declared.
    pub fn luma_table(&self) -> Option<&QuantTable> {
        self.quant_tables.iter().rev().find(|t| t.id == 0)
    }

    /// The first chrominance quantisation table (slot 1), if declared.
    pub fn chroma_table(&self) -> Option<&QuantTable> {
        self.quant_tables.iter().rev().find(|t| t.id == 1)
    }
}

/// Every metadata block found in a file.
#[derive(Debug, Clone, Default)]
pub struct MetadataBlocks {
    /// Raw EXIF (a TIFF structure starting with `II*\0` or `MM\0*`).
    pub exif: Option<Vec<u8>>,
    /// XMP packets, standard and extended, as text.
    pub xmp: Vec<String>,
    /// The embedded ICC profile.
    pub icc: Option<Vec<u8>>,
    /// PNG text chunks, including those after `IDAT`.
    pub text_chunks: Vec<TextChunk>,
    /// JPEG encoding facts (JPEG files only).
    pub jpeg: Option<JpegInfo>,
    /// An animated WebP (`ANIM` chunk present); only the first frame is analysed.
    pub animated: bool,
    /// Problems met while walking the container; the walk continued past them.
    pub warnings: Vec<String>,
}

impl MetadataBlocks {
    /// The text of the first PNG text chunk with this keyword (case-sensitive).
    pub fn text(&self, keyword: &str) -> Option<&str> {
        self.text_chunks.iter().find(|c| c.keyword == keyword).map(|c| c.text.as_str())
    }

    /// `true` when no block of any kind was found.
    pub fn is_empty(&self) -> bool {
        self.exif.is_none() && self.xmp.is_empty() && self.icc.is_none() && self.text_chunks.is_empty()
    }
}

const XMP_SIG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_EXT_SIG: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";
const ICC_SIG: &[u8] = b"ICC_PROFILE\0";

/// Zigzag scan position → natural 8×8 index.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7,
    14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39,
    46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Walk the marker segments of a JPEG up to the first scan.
pub fn read_jpeg(bytes: &[u8]) -> MetadataBlocks {
    let mut out = MetadataBlocks::default();
    let mut info = JpegInfo::default();
    let mut icc_parts: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut pos = 2; // after SOI
    for _ in 0..MAX_CHUNKS {
        // skip fill bytes
        while pos < bytes.len() && bytes[pos] == 0xFF && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if pos + 4 > bytes.len() {
            out.warnings.push("JPEG ends before the first scan".into());
            break;
        }
        if bytes[pos] != 0xFF {
            out.warnings.push(format!("JPEG marker expected at byte {pos}"));
            break;
        }
        let marker = bytes[pos + 1];
        if marker == 0xD9 || marker == 0xDA {
            break; // EOI or start of scan: no more metadata segments before the image data
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            pos += 2;
            continue;
        }
        let len = u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]) as usize;
        if len < 2 || pos + 2 + len > bytes.len() {
            out.warnings.push(format!("JPEG segment 0x{marker:02X} overruns the file"));
            break;
        }
        let data = &bytes[pos + 4..pos + 2 + len];
        match marker {
            0xE1 if data.starts_with(b"Exif\0\0") && out.exif.is_none() => {
                out.exif = Some(data[6..].to_vec());
            }
            0xE1 if data.starts_with(XMP_SIG) => {
                out.xmp.push(String::from_utf8_lossy(&data[XMP_SIG.len()..]).into_owned());
            }
            // extended XMP: 32-byte GUID, 4-byte full length, 4-byte offset, then the chunk
            0xE1 if data.starts_with(XMP_EXT_SIG) && data.len() > XMP_EXT_SIG.len() + 40 => {
                let chunk = &data[XMP_EXT_SIG.len() + 40..];
                out.xmp.push(String::from_utf8_lossy(chunk).into_owned());
            }
            0xE2 if data.starts_with(ICC_SIG) && data.len() > ICC_SIG.len() + 2 => {
                let seq = data[ICC_SIG.len()];
                icc_parts.push((seq, data[ICC_SIG.len() + 2..].to_vec()));
            }
            0xDB => read_dqt(data, &mut info, &mut out.warnings),
            0xC0..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                info.progressive = matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE);
                if data.len() >= 5 {
                    let h = u16::from_be_bytes([data[1], data[2]]) as u32;
                    let w = u16::from_be_bytes([data[3], data[4]]) as u32;
                    info.frame_size = Some((w, h));
                }
            }
            0xFE => info.comments.push(String::from_utf8_lossy(data).trim_end_matches('\0').to_string()),
            _ => {}
        }
        pos += 2 + len;
    }
    if !icc_parts.is_empty() {
        icc_parts.sort_by_key(|(seq, _)| *seq);
        out.icc = Some(icc_parts.into_iter().flat_map(|(_, d)| d).collect());
    }
    out.jpeg = Some(info);
    out
}

fn read_dqt(mut data: &[u8], info: &mut JpegInfo, warnings: &mut Vec<String>) {
    while !data.is_empty() {
        let precision16 = data[0] >> 4 != 0;
        let id = data[0] & 0x0F;
        let size = if precision16 { 128 } else { 64 };
        if data.len() < 1 + size || id > 3 {
            warnings.push("malformed DQT segment".into());
            return;
        }
        let mut values = [0u16; 64];
        for (k, &natural) in ZIGZAG.iter().enumerate() {
            values[natural] = if precision16 {
                u16::from_be_bytes([data[1 + 2 * k], data[2 + 2 * k]])
            } else {
                data[1 + k] as u16
            };
        }
        info.quant_tables.push(QuantTable { id, values });
        data = &data[1 + size..];
    }
}

/// Walk every chunk of a PNG, including those after `IDAT`.
pub fn read_png(bytes: &[u8]) -> MetadataBlocks {
    let mut out = MetadataBlocks::default();
    let mut pos = 8;
    for _ in 0..MAX_CHUNKS {
        if pos + 8 > bytes.len() {
            if pos < bytes.len() || out.text_chunks.is_empty() && pos == 8 {
                out.warnings.push("PNG ends inside a chunk header".into());
            }
            break;
        }
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let Some(data) = bytes.get(pos + 8..pos + 8 + len) else {
            out.warnings.push(format!("PNG chunk {} overruns the file", String::from_utf8_lossy(kind)));
            break;
        };
        match kind {
            b"tEXt" => {
                if let Some((k, v)) = split_keyword(data) {
                    out.text_chunks.push(TextChunk { keyword: k, text: latin1(v) });
                }
            }
            b"zTXt" => {
                if let Some((k, rest)) = split_keyword(data) {
                    match rest.split_first().map(|(_, c)| inflate(c)) {
                        Some(Ok(text)) => out.text_chunks.push(TextChunk { keyword: k, text: latin1(&text) }),
                        _ => out.warnings.push(format!("zTXt chunk '{k}' does not inflate")),
                    }
                }
            }
            b"iTXt" => read_itxt(data, &mut out),
            b"eXIf" => out.exif = Some(data.to_vec()),
            b"iCCP" => {
                if let Some((_, rest)) = split_keyword(data) {
                    if let Some(Ok(icc)) = rest.split_first().map(|(_, c)| inflate(c)) {
                        out.icc = Some(icc);
                    }
                }
            }
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    out
}

fn read_itxt(data: &[u8], out: &mut MetadataBlocks) {
    let Some((keyword, rest)) = split_keyword(data) else { return };
    if rest.len() < 2 {
        return;
    }
    let compressed = rest[0] != 0;
    let rest = &rest[2..];
    // language tag and translated keyword, each NUL-terminated
    let Some(lang_end) = rest.iter().position(|&b| b == 0) else { return };
    let rest = &rest[lang_end + 1..];
    let Some(tk_end) = rest.iter().position(|&b| b == 0) else { return };
    let raw = &rest[tk_end + 1..];
    let text = if compressed {
        match inflate(raw) {
            Ok(t) => t,
            Err(_) => {
                out.warnings.push(format!("iTXt chunk '{keyword}' does not inflate"));
                return;
            }
        }
    } else {
        raw.to_vec()
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    if keyword == "XML:com.adobe.xmp" {
        out.xmp.push(text);
    } else {
        out.text_chunks.push(TextChunk { keyword, text });
    }
}

fn split_keyword(data: &[u8]) -> Option<(String, &[u8])> {
    let end = data.iter().take(80).position(|&b| b == 0)?;
    Some((latin1(&data[..end]), &data[end + 1..]))
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// Inflate a zlib stream, refusing to grow past [`MAX_INFLATED_TEXT`].
fn inflate(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data).take(MAX_INFLATED_TEXT).read_to_end(&mut out)?;
    Ok(out)
}

/// Walk the RIFF chunks of a WebP.
pub fn read_webp(bytes: &[u8]) -> MetadataBlocks {
    let mut out = MetadataBlocks::default();
    let mut pos = 12;
    for _ in 0..MAX_CHUNKS {
        if pos + 8 > bytes.len() {
            break;
        }
        let kind = &bytes[pos..pos + 4];
        let len =
            u32::from_le_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]) as usize;
        let Some(data) = bytes.get(pos + 8..pos + 8 + len) else {
            out.warnings.push(format!("WebP chunk {} overruns the file", String::from_utf8_lossy(kind)));
            break;
        };
        match kind {
            b"EXIF" => {
                // some writers keep the JPEG-style "Exif\0\0" prefix
                let tiff = data.strip_prefix(b"Exif\0\0").unwrap_or(data);
                out.exif = Some(tiff.to_vec());
            }
            b"XMP " => out.xmp.push(String::from_utf8_lossy(data).into_owned()),
            b"ICCP" => out.icc = Some(data.to_vec()),
            b"ANIM" => out.animated = true,
            _ => {}
        }
        pos += 8 + len + (len & 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_walk_stops_cleanly_on_garbage() {
        let blocks = read_jpeg(b"\xFF\xD8\xFF\xE1\xFF\xFFtruncated");
        assert!(blocks.exif.is_none());
        assert!(!blocks.warnings.is_empty());
    }

    #[test]
    fn png_text_chunks_are_read_in_all_three_forms() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut push = |kind: &[u8], data: &[u8]| {
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            png.extend_from_slice(kind);
            png.extend_from_slice(data);
            png.extend_from_slice(&[0, 0, 0, 0]);
        };
        push(b"tEXt", b"Software\0NovelAI");
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, b"Steps: 20").unwrap();
        let mut ztxt = b"parameters\0\0".to_vec();
        ztxt.extend(z.finish().unwrap());
        push(b"zTXt", &ztxt);
        push(b"iTXt", b"prompt\0\0\0en\0\0{\"a\":1}");
        let blocks = read_png(&png);
        assert_eq!(blocks.text("Software"), Some("NovelAI"));
        assert_eq!(blocks.text("parameters"), Some("Steps: 20"));
        assert_eq!(blocks.text("prompt"), Some("{\"a\":1}"));
    }
}
