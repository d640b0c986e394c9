//! Magic-byte sniffing: the format of an upload is decided by its bytes, never its name.

use serde::{Deserialize, Serialize};

/// An image format the detector accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// JPEG / JFIF / EXIF (`FF D8 FF`).
    Jpeg,
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
    /// WebP (`RIFF....WEBP`).
    Webp,
    /// HEIF container with an HEVC (`heic`, `heix`, …) or generic (`mif1`) brand.
    Heif,
    /// AVIF: a HEIF container carrying AV1 (`avif` still image, `avis` sequence brand).
    Avif,
}

/// ISO-BMFF brands of HEVC-coded HEIF, decoded through libheif.
const HEVC_BRANDS: &[&[u8; 4]] = &[b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"];

/// ISO-BMFF brands of AV1-coded HEIF (AVIF), decoded through libheif.
const AVIF_BRANDS: &[&[u8; 4]] = &[b"avif", b"avis"];

/// Generic HEIF brands that say nothing about the codec.
const GENERIC_HEIF_BRANDS: &[&[u8; 4]] = &[b"mif1", b"msf1"];

impl ImageFormat {
    /// Every accepted format.
    pub const ALL: [ImageFormat; 5] = [Self::Jpeg, Self::Png, Self::Webp, Self::Heif, Self::Avif];

    /// Decide the format from the first bytes of a file; `None` for anything unsupported.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Some(Self::Jpeg);
        }
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Some(Self::Png);
        }
        if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            return Some(Self::Webp);
        }
        sniff_ftyp(bytes)
    }

    /// The IANA media type, as the C2PA reader and HTTP answers expect it.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Heif => "image/heif",
            Self::Avif => "image/avif",
        }
    }

    /// Lower-case short name used in reports and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Heif => "heif",
            Self::Avif => "avif",
        }
    }
}

/// The format an ISO-BMFF `ftyp` box declares: its major brand first, then its compatible
/// brands. An AV1 brand (`avif`, `avis`) makes it AVIF and an HEVC brand (`heic`, `heix`, …)
/// HEIF; a major brand of either kind decides, and when only the compatible brands name a
/// codec, an HEVC brand wins over an AV1 one (files that declared both were HEIF before AVIF
/// was accepted). A generic `mif1`/`msf1` brand with no codec brand is HEIF. Anything else,
/// such as MP4 video or JPEG 2000 (`jp2 `), is not an image we accept.
fn sniff_ftyp(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let box_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let end = box_len.clamp(16, bytes.len().min(256));
    let major = &bytes[8..12];
    let is = |brands: &[&[u8; 4]], brand: &[u8]| brands.iter().any(|b| b.as_slice() == brand);
    if is(AVIF_BRANDS, major) {
        return Some(ImageFormat::Avif);
    }
    if is(HEVC_BRANDS, major) {
        return Some(ImageFormat::Heif);
    }
    // major brand, then 4 bytes of minor version, then compatible brands
    let compatible = || bytes[16..end].chunks_exact(4);
    if compatible().any(|brand| is(HEVC_BRANDS, brand)) {
        return Some(ImageFormat::Heif);
    }
    if compatible().any(|brand| is(AVIF_BRANDS, brand)) {
        return Some(ImageFormat::Avif);
    }
    if std::iter::once(major).chain(compatible()).any(|brand| is(GENERIC_HEIF_BRANDS, brand)) {
        return Some(ImageFormat::Heif);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_magic_bytes() {
        assert_eq!(ImageFormat::sniff(b"\xFF\xD8\xFF\xE0rest"), Some(ImageFormat::Jpeg));
        assert_eq!(ImageFormat::sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageFormat::Png));
        assert_eq!(ImageFormat::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageFormat::Webp));
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"), Some(ImageFormat::Heif));
        assert_eq!(ImageFormat::sniff(b"GIF89a"), None);
        assert_eq!(ImageFormat::sniff(b""), None);
        assert_eq!(ImageFormat::sniff(b"RIFF\0\0\0\0WAVE"), None);
    }

    #[test]
    fn avif_brands_sniff_as_avif() {
        // libheif's example.avif and the c2pa sample: major `avif`, compatible `avif mif1 (miaf)`
        assert_eq!(
            ImageFormat::sniff(b"\0\0\0\x18ftypavif\0\0\0\0avifmif1\0\0\0\xf8meta"),
            Some(ImageFormat::Avif)
        );
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf"), Some(ImageFormat::Avif));
        // an image sequence
        assert_eq!(
            ImageFormat::sniff(b"\0\0\0\x20ftypavis\0\0\0\0avisavifmsf1miaf"),
            Some(ImageFormat::Avif)
        );
        // a generic major brand with AV1 among the compatible brands
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x18ftypmif1\0\0\0\0mif1avif"), Some(ImageFormat::Avif));
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x18ftypmsf1\0\0\0\0msf1avis"), Some(ImageFormat::Avif));
        assert_eq!(ImageFormat::Avif.mime(), "image/avif");
        assert_eq!(ImageFormat::Avif.name(), "avif");
        assert_eq!(serde_json::to_value(ImageFormat::Avif).unwrap(), "avif");
    }

    #[test]
    fn heic_stays_heif() {
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"), Some(ImageFormat::Heif));
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x18ftypheix\0\0\0\0mif1heix"), Some(ImageFormat::Heif));
        // generic HEIF without a codec brand
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x14ftypmif1\0\0\0\0mif1"), Some(ImageFormat::Heif));
        // an HEVC brand beside an AV1 one among the compatible brands keeps the file HEIF
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x1cftypmif1\0\0\0\0mif1heicavif"), Some(ImageFormat::Heif));
        // a major HEVC brand decides even when an AV1 brand is listed
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x18ftypheic\0\0\0\0avifmif1"), Some(ImageFormat::Heif));
        assert_eq!(ImageFormat::Heif.mime(), "image/heif");
    }

    #[test]
    fn other_iso_bmff_files_are_refused() {
        // MP4 video, JPEG 2000, QuickTime
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x18ftypisom\0\0\0\0isomavc1"), None);
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x14ftypjp2 \0\0\0\0jp2 "), None);
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x14ftypqt  \0\0\0\0qt  "), None);
        // an `avif` brand that is not inside an ftyp box
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x18metaavif\0\0\0\0avifmif1"), None);
        // too short to hold a major brand and a minor version
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x0cftypavif"), None);
    }
}
