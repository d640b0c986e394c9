//! The heatmap overlay that `tellscan detect --heatmap DIR` writes: the image with the fused
//! per-block suspicion of the pixel modules painted over it in red.

use image::{Rgb, RgbImage};

use super::views::Heatmap;

/// Opacity of the red overlay at suspicion 1.
const MAX_ALPHA: f32 = 0.65;

/// The mean of the maps' values at window pixel (x, y), ignoring maps without an opinion there.
fn fused_value(maps: &[&Heatmap], x: usize, y: usize) -> Option<f32> {
    let (mut sum, mut n) = (0.0, 0);
    for m in maps {
        let (c, r) = (x / m.block.max(1), y / m.block.max(1));
        if c < m.cols && r < m.rows {
            let v = m.values[r * m.cols + c];
            if v.is_finite() {
                sum += v.clamp(0.0, 1.0);
                n += 1;
            }
        }
    }
    (n > 0).then(|| sum / n as f32)
}

/// Paint the fused maps over `image`. The maps cover the analysis window whose top-left is
/// `origin`; pixels outside it, or where no map has an opinion, are dimmed.
pub fn render(image: &RgbImage, maps: &[&Heatmap], origin: (usize, usize)) -> RgbImage {
    let mut out = image.clone();
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let (x, y) = (x as usize, y as usize);
        let value =
            (x >= origin.0 && y >= origin.1).then(|| fused_value(maps, x - origin.0, y - origin.1)).flatten();
        let [r, g, b] = pixel.0.map(f32::from);
        *pixel = match value {
            Some(v) => {
                let a = MAX_ALPHA * v;
                Rgb([(r * (1.0 - a) + 255.0 * a) as u8, (g * (1.0 - a)) as u8, (b * (1.0 - a)) as u8])
            }
            None => Rgb([(r * 0.4) as u8, (g * 0.4) as u8, (b * 0.4) as u8]),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicious_blocks_turn_red_and_uncovered_pixels_dim() {
        let image = RgbImage::from_pixel(8, 4, Rgb([100, 100, 100]));
        let map = Heatmap { block: 2, cols: 2, rows: 2, values: vec![1.0, 0.0, f32::NAN, 0.0] };
        let out = render(&image, &[&map], (2, 0));
        assert_eq!(out.get_pixel(0, 0).0, [40, 40, 40]); // left of the window
                                                         // suspicion 1: 65 % red over the grey
        assert_eq!(out.get_pixel(2, 0).0, [200, 35, 35]);
        assert_eq!(out.get_pixel(4, 0).0, [100, 100, 100]); // suspicion 0: unchanged
        assert_eq!(out.get_pixel(2, 2).0, [40, 40, 40]); // NaN: no opinion
        assert_eq!(out.get_pixel(7, 3).0, [40, 40, 40]); // beyond the maps
    }
}
