//! Shared read-only pixel views, computed once per image and handed to every pixel module:
//! the analysis window, its luminance plane and noise residual, and the native-resolution
//! crops the modules analyse.
//!
//! The window is the whole image up to [`MAX_WINDOW`] pixels a side, otherwise its centre at
//! native resolution: resampling would destroy the traces the modules look for (the `ml`
//! module alone halves the window, by its own measured choice), and bounding
//! the window bounds memory (≤ 4 MP × 9 bytes) and time on 12+ MP photos.

use image::RgbImage;

use super::decode::{DecodedImage, ImageFormat};
use super::report::Region;

/// A single-channel float image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` samples.
    pub data: Vec<f32>,
}

impl Plane {
    /// A plane of zeros.
    pub fn zeros(width: usize, height: usize) -> Self {
        Self { width, height, data: vec![0.0; width * height] }
    }

    /// The sample at (x, y).
    #[inline]
    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.width + x]
    }

    /// Copy out a rectangle.
    pub fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Plane {
        let mut data = Vec::with_capacity(w * h);
        for row in y..y + h {
            data.extend_from_slice(&self.data[row * self.width + x..row * self.width + x + w]);
        }
        Plane { width: w, height: h, data }
    }
}

/// A native-resolution square crop position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    /// Left edge.
    pub x: usize,
    /// Top edge.
    pub y: usize,
    /// Side length.
    pub side: usize,
}

/// A coarse per-block map of how suspicious each region is (0 = clean, 1 = most suspicious).
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// Block side in image pixels.
    pub block: usize,
    /// Blocks per row.
    pub cols: usize,
    /// Blocks per column.
    pub rows: usize,
    /// `cols * rows` values in 0-1, row-major; NaN where the module has no opinion.
    pub values: Vec<f32>,
}

impl Heatmap {
    /// The `n` most suspicious blocks as image regions, most suspicious first.
    pub fn top_regions(&self, n: usize, module: &str) -> Vec<Region> {
        let mut idx: Vec<usize> = (0..self.values.len()).filter(|&i| self.values[i].is_finite()).collect();
        idx.sort_by(|&a, &b| self.values[b].total_cmp(&self.values[a]));
        idx.into_iter()
            .take(n)
            .map(|i| Region {
                x: ((i % self.cols) * self.block) as u32,
                y: ((i / self.cols) * self.block) as u32,
                width: self.block as u32,
                height: self.block as u32,
                score: (self.values[i] as f64 * 1000.0).round() / 1000.0,
                module: module.to_string(),
            })
            .collect()
    }
}

/// What a pixel module returns: its report and, when it can localise, a heatmap.
#[derive(Debug, Clone)]
pub struct PixelFinding {
    /// The module's report.
    pub report: super::report::ModuleReport,
    /// Per-block suspicion, when the module localises its evidence.
    pub heatmap: Option<Heatmap>,
}

/// Largest side of the analysis window.
pub const MAX_WINDOW: usize = 2048;

/// Everything the pixel modules read, computed once.
#[derive(Debug, Clone)]
pub struct Views {
    /// Format of the file.
    pub format: ImageFormat,
    /// Size of the whole image.
    pub full_size: (usize, usize),
    /// Top-left corner of the analysis window in the whole image.
    pub origin: (usize, usize),
    /// Width of the analysis window.
    pub width: usize,
    /// Height of the analysis window.
    pub height: usize,
    /// The window's 8-bit RGB pixels.
    pub image: RgbImage,
    /// Luminance (BT.601), 0-255.
    pub luma: Plane,
    /// Luminance minus its 3×3 median: the noise residual, where sensor and generator traces live.
    pub residual: Plane,
    /// The estimated JPEG quality (from the quantisation tables), JPEG input only.
    pub jpeg_quality: Option<u8>,
}

/// Shorter side below which the pixel modules abstain: their statistics need room.
pub const MIN_SIDE: usize = 128;

impl Views {
    /// Build the views of a decoded image.
    pub fn new(image: &DecodedImage, jpeg_quality: Option<u8>) -> Self {
        let (fw, fh) = (image.width as usize, image.height as usize);
        let (w, h) = (fw.min(MAX_WINDOW), fh.min(MAX_WINDOW));
        // keep the window on the 8x8 JPEG grid so block artefacts stay where modules expect them
        let (x0, y0) = ((fw - w) / 2 / 8 * 8, (fh - h) / 2 / 8 * 8);
        let window = if (w, h) == (fw, fh) {
            image.rgb.clone()
        } else {
            image::imageops::crop_imm(&image.rgb, x0 as u32, y0 as u32, w as u32, h as u32).to_image()
        };
        let luma = Plane {
            width: w,
            height: h,
            data: window
                .pixels()
                .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
                .collect(),
        };
        let residual = median_residual(&luma);
        Self {
            format: image.format,
            full_size: (fw, fh),
            origin: (x0, y0),
            width: w,
            height: h,
            image: window,
            luma,
            residual,
            jpeg_quality,
        }
    }

    /// One colour channel of the window (0 = red, 1 = green, 2 = blue) as floats.
    pub fn channel(&self, c: usize) -> Plane {
        Plane {
            width: self.width,
            height: self.height,
            data: self.image.pixels().map(|p| f32::from(p[c])).collect(),
        }
    }

    /// Up to `max` non-overlapping `side`×`side` crops at native resolution, spread over the
    /// image (centre first, then the quadrants' centres), aligned to the 8×8 JPEG grid.
    /// Empty when the image is smaller than `side`.
    pub fn crops(&self, side: usize, max: usize) -> Vec<Crop> {
        if self.width < side || self.height < side || max == 0 {
            return vec![];
        }
        let align = |v: usize, limit: usize| (v.min(limit) / 8) * 8;
        let centre = |cx: usize, cy: usize| Crop {
            x: align(cx.saturating_sub(side / 2), self.width - side),
            y: align(cy.saturating_sub(side / 2), self.height - side),
            side,
        };
        let (w, h) = (self.width, self.height);
        let candidates = [
            centre(w / 2, h / 2),
            centre(w / 4, h / 4),
            centre(3 * w / 4, h / 4),
            centre(w / 4, 3 * h / 4),
            centre(3 * w / 4, 3 * h / 4),
        ];
        let mut out: Vec<Crop> = Vec::new();
        for c in candidates {
            let overlaps = out
                .iter()
                .any(|o| c.x < o.x + side && o.x < c.x + side && c.y < o.y + side && o.y < c.y + side);
            if !overlaps {
                out.push(c);
            }
            if out.len() == max {
                break;
            }
        }
        out
    }
}

/// `plane - median3x3(plane)`, with edges replicated.
pub fn median_residual(plane: &Plane) -> Plane {
    let (w, h) = (plane.width, plane.height);
    let mut out = Plane::zeros(w, h);
    if w < 3 || h < 3 {
        return out;
    }
    for y in 0..h {
        let rows = [y.saturating_sub(1), y, (y + 1).min(h - 1)].map(|r| &plane.data[r * w..(r + 1) * w]);
        for x in 0..w {
            let (l, r) = (x.saturating_sub(1), (x + 1).min(w - 1));
            let mut v = [
                rows[0][l], rows[0][x], rows[0][r], rows[1][l], rows[1][x], rows[1][r], rows[2][l],
                rows[2][x], rows[2][r],
            ];
            out.data[y * w + x] = rows[1][x] - median9(&mut v);
        }
    }
    out
}

#[rustfmt::skip]
/// Median of nine values by the classic 19-exchange sorting network (Paeth), branch-free.
#[inline]
fn median9(p: &mut [f32; 9]) -> f32 {
    #[inline(always)]
    fn s(p: &mut [f32; 9], a: usize, b: usize) {
        let (x, y) = (p[a], p[b]);
        p[a] = x.min(y);
        p[b] = x.max(y);
    }
    s(p, 1, 2); s(p, 4, 5); s(p, 7, 8); s(p, 0, 1); s(p, 3, 4); s(p, 6, 7);
    s(p, 1, 2); s(p, 4, 5); s(p, 7, 8); s(p, 0, 3); s(p, 5, 8); s(p, 4, 7);
    s(p, 3, 6); s(p, 1, 4); s(p, 2, 5); s(p, 4, 7); s(p, 4, 2); s(p, 6, 4);
    s(p, 4, 2);
    p[4]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_of_a_flat_plane_is_zero_and_of_an_impulse_is_the_impulse() {
        let mut p = Plane::zeros(9, 9);
        p.data[4 * 9 + 4] = 100.0;
        let r = median_residual(&p);
        assert_eq!(r.at(4, 4), 100.0);
        assert_eq!(r.at(0, 0), 0.0);
    }

    #[test]
    fn median9_agrees_with_sorting() {
        let mut seed = 7u32;
        for _ in 0..2000 {
            let mut v = [0f32; 9];
            for x in v.iter_mut() {
                seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                *x = (seed >> 16) as f32 % 17.0;
            }
            let mut sorted = v;
            sorted.sort_by(f32::total_cmp);
            assert_eq!(median9(&mut v), sorted[4]);
        }
    }

    #[test]
    fn crops_are_aligned_and_disjoint() {
        let img = DecodedImage {
            format: ImageFormat::Png,
            width: 1200,
            height: 1100,
            rgb: RgbImage::new(1200, 1100),
            alpha: None,
            blocks: Default::default(),
        };
        let v = Views::new(&img, None);
        let crops = v.crops(512, 4);
        assert!(!crops.is_empty());
        for c in &crops {
            assert_eq!((c.x % 8, c.y % 8), (0, 0));
            assert!(c.x + 512 <= 1200 && c.y + 512 <= 1100);
        }
        assert!(v.crops(2000, 4).is_empty());
    }
}
