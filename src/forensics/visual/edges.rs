//! Profiles across strong edges: halo (overshoot beyond the plateaus), ringing (oscillation
//! beside the edge), width, and how rough the plateaus are (an edge dissolving into texture).

use crate::forensics::views::{Plane, Views};

/// Summary of the strong-edge profiles.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EdgeStats {
    /// Number of edge profiles measured.
    pub count: usize,
    /// Median overshoot beyond the plateaus, as a share of the edge contrast.
    pub halo: f32,
    /// Median oscillation beside the edge (total variation beyond the net step), per contrast.
    pub ringing: f32,
    /// Median 10-90 % rise width in pixels.
    pub width: f32,
    /// Median plateau roughness (standard deviation beside the edge per contrast).
    pub roughness: f32,
    /// Median continuity: gradient magnitude 3 and 5 px along the edge over that at the edge
    /// (an edge that dissolves into texture loses it within a few pixels).
    pub continuity: f32,
}

/// Most profiles measured (spread over the window).
const MAX_PROFILES: usize = 6000;
/// Half length of a profile in pixels.
const REACH: i32 = 6;
/// Smallest contrast between the plateaus (8-bit levels) for a profile to count.
const MIN_CONTRAST: f32 = 24.0;

#[inline]
fn bilinear(p: &Plane, x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as usize, y0 as usize);
    let w = p.width;
    let a = p.data[y0 * w + x0];
    let b = p.data[y0 * w + x0 + 1];
    let c = p.data[(y0 + 1) * w + x0];
    let d = p.data[(y0 + 1) * w + x0 + 1];
    a + (b - a) * fx + (c - a) * fy + (a - b - c + d) * fx * fy
}

#[inline]
fn nearest(m: &[f32], w: usize, x: f32, y: f32) -> f32 {
    let (xi, yi) = (x.round() as usize, y.round() as usize);
    m[yi * w + xi]
}

/// Largest side of the centre region whose edges are profiled (bounds the time on 4 MP windows).
pub const EDGE_REGION: usize = 512;

/// Measure the strong-edge profiles of the window's luminance (its centre, at most
/// [`EDGE_REGION`] pixels a side).
pub fn edge_stats(views: &Views) -> EdgeStats {
    let (w, h) = (views.width.min(EDGE_REGION), views.height.min(EDGE_REGION));
    let region = views.luma.crop((views.width - w) / 2, (views.height - h) / 2, w, h);
    edge_stats_of(&region)
}

/// Measure the strong-edge profiles of a luminance plane.
pub fn edge_stats_of(l: &Plane) -> EdgeStats {
    let (w, h) = (l.width, l.height);
    let margin = REACH as usize + 2;
    if w <= 2 * margin || h <= 2 * margin {
        return EdgeStats::default();
    }
    // Sobel magnitude and its 98th percentile
    let sobel = |x: usize, y: usize| {
        let (a, b, c) =
            (&l.data[(y - 1) * w..y * w], &l.data[y * w..(y + 1) * w], &l.data[(y + 1) * w..(y + 2) * w]);
        let gx = a[x + 1] + 2.0 * b[x + 1] + c[x + 1] - a[x - 1] - 2.0 * b[x - 1] - c[x - 1];
        let gy = c[x - 1] + 2.0 * c[x] + c[x + 1] - a[x - 1] - 2.0 * a[x] - a[x + 1];
        (gx, gy)
    };
    let mut mag = vec![0f32; w * h];
    let mut hist = vec![0u32; 513];
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let (gx, gy) = sobel(x, y);
            let m = (gx * gx + gy * gy).sqrt() / 4.0;
            mag[y * w + x] = m;
            hist[((m * 2.0) as usize).min(512)] += 1;
        }
    }
    let total: u32 = hist.iter().sum();
    let (mut acc, mut p98) = (0u32, 256f32);
    for (i, &c) in hist.iter().enumerate() {
        acc += c;
        if acc as f32 >= 0.98 * total as f32 {
            p98 = i as f32 / 2.0;
            break;
        }
    }
    let threshold = p98.max(12.0);
    // candidates: local maxima of the magnitude along the gradient direction
    let mut candidates = Vec::new();
    for y in margin..h - margin {
        for x in margin..w - margin {
            let m = mag[y * w + x];
            if m < threshold {
                continue;
            }
            let (gx, gy) = sobel(x, y);
            let (dx, dy) = ((gx / (m * 4.0)).round() as isize, (gy / (m * 4.0)).round() as isize);
            let fwd = mag[(y as isize + dy) as usize * w + (x as isize + dx) as usize];
            let back = mag[(y as isize - dy) as usize * w + (x as isize - dx) as usize];
            if m >= fwd && m > back {
                candidates.push((x, y));
            }
        }
    }
    let stride = candidates.len().div_ceil(MAX_PROFILES).max(1);
    let (mut halo, mut ringing, mut width, mut rough) = (vec![], vec![], vec![], vec![]);
    let mut continuity = vec![];
    let mut prof = [0f32; (2 * REACH + 1) as usize];
    for &(x, y) in candidates.iter().step_by(stride) {
        let (gx, gy) = sobel(x, y);
        let norm = (gx * gx + gy * gy).sqrt();
        let (nx, ny) = (gx / norm, gy / norm);
        for (k, v) in prof.iter_mut().enumerate() {
            let t = k as f32 - REACH as f32;
            *v = bilinear(l, x as f32 + t * nx, y as f32 + t * ny);
        }
        let n = prof.len();
        let lo = 0.5 * (prof[0] + prof[1]);
        let hi = 0.5 * (prof[n - 1] + prof[n - 2]);
        let contrast = hi - lo;
        if contrast < MIN_CONTRAST {
            continue;
        }
        let c = REACH as usize;
        let over_hi = prof[c + 1..c + 5].iter().fold(f32::MIN, |a, &b| a.max(b)) - hi;
        let under_lo = lo - prof[c - 4..c].iter().fold(f32::MAX, |a, &b| a.min(b));
        halo.push((over_hi.max(0.0) + under_lo.max(0.0)) / contrast);
        let tv = |s: &[f32]| {
            s.windows(2).map(|p| (p[1] - p[0]).abs()).sum::<f32>() - (s[s.len() - 1] - s[0]).abs()
        };
        ringing.push((tv(&prof[c + 2..]) + tv(&prof[..c - 1])) / contrast);
        let (a, b) = (lo + 0.1 * contrast, lo + 0.9 * contrast);
        width.push(prof.iter().filter(|&&v| v > a && v < b).count() as f32);
        let sd = |s: &[f32]| {
            let m = s.iter().sum::<f32>() / s.len() as f32;
            (s.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / s.len() as f32).sqrt()
        };
        rough.push(0.5 * (sd(&prof[c + 3..]) + sd(&prof[..c - 2])) / contrast);
        let m0 = mag[y * w + x];
        let mut cont = 0f32;
        for k in [-5.0f32, -3.0, 3.0, 5.0] {
            let (tx, ty) = (x as f32 - k * ny, y as f32 + k * nx);
            cont += (nearest(&mag, w, tx, ty) / m0).min(1.0);
        }
        continuity.push(cont / 4.0);
    }
    let count = halo.len();
    if count == 0 {
        return EdgeStats::default();
    }
    EdgeStats {
        count,
        halo: median(&mut halo),
        ringing: median(&mut ringing),
        width: median(&mut width),
        roughness: median(&mut rough),
        continuity: median(&mut continuity),
    }
}

fn median(v: &mut [f32]) -> f32 {
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f32::total_cmp).1
}
