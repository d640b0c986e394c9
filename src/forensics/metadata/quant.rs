//! JPEG quantisation-table fingerprint: the standard IJG (Annex K) tables scaled to a quality,
//! as libjpeg and most software write them, against the custom tables of camera firmware.

use crate::forensics::decode::JpegInfo;

/// ITU-T T.81 Annex K luminance table, natural order.
const STD_LUMA: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17,
    22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78,
    87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// ITU-T T.81 Annex K chrominance table, natural order.
const STD_CHROMA: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99, 47, 66,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// What the quantisation tables say about the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantFingerprint {
    /// The IJG quality (1-100) whose tables are nearest to the file's.
    pub quality: u8,
    /// `true` when the tables are exactly the IJG tables at that quality.
    pub standard: bool,
}

/// The IJG table for `base` at `quality`, as `jpeg_set_quality` computes it (baseline clamp).
fn scaled(base: &[u16; 64], quality: u8) -> [u16; 64] {
    let q = quality.clamp(1, 100) as u32;
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    base.map(|b| ((b as u32 * scale + 50) / 100).clamp(1, 255) as u16)
}

fn distance(a: &[u16; 64], b: &[u16; 64]) -> u32 {
    a.iter().zip(b).map(|(&x, &y)| (x as i32 - y as i32).unsigned_abs()).sum()
}

/// Fingerprint the file's tables; `None` when there is no luminance table.
pub fn fingerprint(info: &JpegInfo) -> Option<QuantFingerprint> {
    let luma = &info.luma_table()?.values;
    let chroma = info.chroma_table().map(|t| &t.values);
    let cost = |q: u8| {
        distance(luma, &scaled(&STD_LUMA, q)) + chroma.map_or(0, |c| distance(c, &scaled(&STD_CHROMA, q)))
    };
    let quality = (1..=100u8).min_by_key(|&q| cost(q))?;
    Some(QuantFingerprint { quality, standard: cost(quality) == 0 })
}

/// The IJG quality of a JPEG, exact for standard tables and approximate for custom ones.
pub fn estimate_quality(info: &JpegInfo) -> Option<u8> {
    fingerprint(info).map(|f| f.quality)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::decode::{blocks::read_jpeg, QuantTable};

    #[test]
    fn recognises_ijg_tables_written_by_the_image_crate() {
        for quality in [30u8, 75, 90, 100] {
            let img =
                image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 128]));
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode_image(&img).unwrap();
            let info = read_jpeg(&out).jpeg.unwrap();
            let fp = fingerprint(&info).unwrap();
            assert!(fp.standard, "q{quality} not recognised as standard: {fp:?}");
            assert_eq!(fp.quality, quality);
        }
    }

    #[test]
    fn custom_tables_are_not_standard() {
        let mut values = scaled(&STD_LUMA, 92);
        values[5] += 3;
        let info = JpegInfo { quant_tables: vec![QuantTable { id: 0, values }], ..Default::default() };
        let fp = fingerprint(&info).unwrap();
        assert!(!fp.standard);
        assert!((90..=94).contains(&fp.quality));
    }
}
