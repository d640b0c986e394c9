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
}

/// ISO-BMFF brands that identify a HEIF still image we can decode through libheif.
const HEIF_BRANDS: &[&[u8; 4]] = &[b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"];

impl ImageFormat {
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
        if is_heif(bytes) {
            return Some(Self::Heif);
        }
        None
    }

    /// The IANA media type, as the C2PA reader and HTTP answers expect it.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Heif => "image/heif",
        }
    }

    /// Lower-case short name used in reports and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Heif => "heif",
        }
    }
}

/// An `ftyp` box whose major brand, or one of its compatible brands, is a HEIF still-image brand.
/// AVIF (`avif`) files are HEIF containers too but carry AV1, which is outside the accepted set
/// unless they also declare an HEVC brand.
fn is_heif(bytes: &[u8]) -> bool {
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return false;
    }
    let box_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let end = box_len.clamp(16, bytes.len().min(256));
    let major = &bytes[8..12];
    if major == b"avif" || major == b"avis" {
        return false;
    }
    // major brand, then 4 bytes of minor version, then compatible brands
    std::iter::once(major)
        .chain(bytes[16..end].chunks_exact(4))
        .any(|brand| HEIF_BRANDS.iter().any(|b| b.as_slice() == brand))
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
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x18ftypavif\0\0\0\0mif1avif"), None);
        assert_eq!(ImageFormat::sniff(b"GIF89a"), None);
        assert_eq!(ImageFormat::sniff(b""), None);
        assert_eq!(ImageFormat::sniff(b"RIFF\0\0\0\0WAVE"), None);
    }
}
