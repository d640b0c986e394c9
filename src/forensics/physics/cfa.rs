//! Demosaicing (colour filter array) traces.
//!
//! A Bayer sensor measures one colour per photosite; the other two are interpolated from the
//! neighbours. An interpolated sample is (close to) a linear combination of its neighbours, a
//! measured one is not. So, per colour channel and per position of the 2×2 lattice, a linear
//! predictor fitted by least squares from the pixel's neighbours leaves a small error where the
//! channel was interpolated and a large one where it was measured. The pattern of which
//! lattice positions carry the large error, across the three channels, is the Bayer phase.

use crate::forensics::views::{Crop, Heatmap, Views};

/// The four arrangements of the 2×2 Bayer tile, named row by row from the top-left photosite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BayerPhase {
    /// Red top-left, blue bottom-right.
    Rggb,
    /// Green top-left, red top-right, blue bottom-left.
    Grbg,
    /// Green top-left, blue top-right, red bottom-left.
    Gbrg,
    /// Blue top-left, red bottom-right.
    Bggr,
}

impl BayerPhase {
    /// All four phases.
    pub const ALL: [BayerPhase; 4] = [BayerPhase::Rggb, BayerPhase::Grbg, BayerPhase::Gbrg, BayerPhase::Bggr];

    /// The upper-case name (`RGGB`, …).
    pub fn name(self) -> &'static str {
        match self {
            BayerPhase::Rggb => "RGGB",
            BayerPhase::Grbg => "GRBG",
            BayerPhase::Gbrg => "GBRG",
            BayerPhase::Bggr => "BGGR",
        }
    }

    /// The colour (0 = red, 1 = green, 2 = blue) measured at pixel (x, y) of the full image.
    pub fn colour_at(self, x: usize, y: usize) -> usize {
        self.tile()[lattice(x, y)]
    }

    /// Colour measured at each lattice position, in [`lattice`] order.
    fn tile(self) -> [usize; 4] {
        match self {
            BayerPhase::Rggb => [0, 1, 1, 2],
            BayerPhase::Grbg => [1, 0, 2, 1],
            BayerPhase::Gbrg => [1, 2, 0, 1],
            BayerPhase::Bggr => [2, 1, 1, 0],
        }
    }
}

impl std::fmt::Display for BayerPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Lattice position of (x, y): 0 = (even, even), 1 = (odd, even), 2 = (even, odd), 3 = (odd, odd).
#[inline]
fn lattice(x: usize, y: usize) -> usize {
    (x & 1) | ((y & 1) << 1)
}

/// Floor of the mean squared prediction error, in grey levels², before taking logs: below
/// 8-bit rounding noise (1/12) nothing is measured.
const ERROR_FLOOR: f64 = 0.02;

/// Least-squares moments for one (channel, lattice position). The predictor is
/// `c ≈ m + w₁·(h − 2m) + w₂·(v − 2m)`, with `h`, `v` the horizontal and vertical neighbour
/// pairs summed and `m` the mean of the four diagonals: every weight set that preserves a
/// flat area (weights summing to one), which covers bilinear and most linear demosaicing
/// kernels, and keeps the sums small (differences, not grey levels) for f32 accumulation.
/// Order: f₁f₁, f₁f₂, f₂f₂, f₁t, f₂t, tt, n.
type Moments = [f64; 7];

/// Independent f32 accumulators the compiler can keep in vector registers.
const LANES: usize = 8;

/// The moments of three equally long rows of (f₁, f₂, t).
fn row_moments(f1: &[f32], f2: &[f32], t: &[f32], out: &mut Moments) {
    let n = f1.len().min(f2.len()).min(t.len());
    let mut acc = [[0f32; LANES]; 6];
    let chunks = n / LANES;
    for i in 0..chunks {
        let r = i * LANES..(i + 1) * LANES;
        let (a, b, c) = (&f1[r.clone()], &f2[r.clone()], &t[r]);
        for l in 0..LANES {
            acc[0][l] += a[l] * a[l];
            acc[1][l] += a[l] * b[l];
            acc[2][l] += b[l] * b[l];
            acc[3][l] += a[l] * c[l];
            acc[4][l] += b[l] * c[l];
            acc[5][l] += c[l] * c[l];
        }
    }
    for i in chunks * LANES..n {
        let (a, b, c) = (f1[i], f2[i], t[i]);
        acc[0][0] += a * a;
        acc[1][0] += a * b;
        acc[2][0] += b * b;
        acc[3][0] += a * c;
        acc[4][0] += b * c;
        acc[5][0] += c * c;
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o += a.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    out[6] += n as f64;
}

/// The fitted weights `(w₁, w₂)` and the mean squared error of one set of moments.
fn solve(m: &Moments) -> ([f64; 2], f64) {
    if m[6] < 16.0 {
        return ([0.0; 2], 0.0);
    }
    // a tiny ridge keeps flat (synthetic) areas solvable
    let ridge = 1e-9 * (m[0] + m[2]) + 1e-9;
    let (a, b, d) = (m[0] + ridge, m[1], m[2] + ridge);
    let det = a * d - b * b;
    let w = if det > 0.0 { [(d * m[3] - b * m[4]) / det, (a * m[4] - b * m[3]) / det] } else { [0.0; 2] };
    let sse = m[5] - w[0] * m[3] - w[1] * m[4];
    (w, (sse / m[6]).max(0.0))
}

/// One crop of one channel, split into even and odd columns (so that every lattice
/// position's neighbours are contiguous).
struct Split {
    even: Vec<Vec<f32>>,
    odd: Vec<Vec<f32>>,
}

fn split(views: &Views, c: usize, crop: &Crop) -> Split {
    let raw = views.image.as_raw();
    let half = crop.side / 2;
    let (mut even, mut odd) = (Vec::with_capacity(crop.side), Vec::with_capacity(crop.side));
    for y in crop.y..crop.y + crop.side {
        let row = &raw[(y * views.width + crop.x) * 3..(y * views.width + crop.x + crop.side) * 3];
        let (mut e, mut o) = (Vec::with_capacity(half), Vec::with_capacity(half));
        for px in row.chunks_exact(6) {
            e.push(f32::from(px[c]));
            o.push(f32::from(px[3 + c]));
        }
        even.push(e);
        odd.push(o);
    }
    Split { even, odd }
}

/// Features of one row at one column parity: (f₁, f₂, t) for every interior pixel.
fn row_features(s: &Split, y: usize, odd_x: bool, buf: &mut [Vec<f32>; 3]) {
    // the centre's own columns, and the other parity's (its left/right neighbours): an even
    // centre 2k+2 has neighbours 2k+1, 2k+3 (odd k, k+1); an odd centre 2k+1 has 2k, 2k+2
    // (even k, k+1)
    let (cen, nb) = if odd_x { (&s.odd, &s.even) } else { (&s.even, &s.odd) };
    let n = cen[y].len() - 1;
    let c0 = usize::from(!odd_x);
    let (c, up, down) = (&cen[y][c0..c0 + n], &cen[y - 1][c0..c0 + n], &cen[y + 1][c0..c0 + n]);
    let (left, right) = (&nb[y][..n], &nb[y][1..=n]);
    let (ul, ur, dl, dr) = (&nb[y - 1][..n], &nb[y - 1][1..=n], &nb[y + 1][..n], &nb[y + 1][1..=n]);
    for b in buf.iter_mut() {
        b.resize(n, 0.0);
    }
    let [f1, f2, t] = buf;
    let (f1, f2, t) = (&mut f1[..n], &mut f2[..n], &mut t[..n]);
    for k in 0..n {
        let m = (ul[k] + ur[k] + dl[k] + dr[k]) * 0.25;
        f1[k] = left[k] + right[k] - 2.0 * m;
        f2[k] = up[k] + down[k] - 2.0 * m;
        t[k] = c[k] - m;
    }
}

/// Per-channel, per-lattice-position moments of one crop.
fn crop_moments(views: &Views, crop: &Crop) -> [[Moments; 4]; 3] {
    let mut out = [[[0.0; 7]; 4]; 3];
    let mut buf = [Vec::new(), Vec::new(), Vec::new()];
    for (c, per_channel) in out.iter_mut().enumerate() {
        let s = split(views, c, crop);
        for y in 1..crop.side - 1 {
            for odd_x in [false, true] {
                row_features(&s, y, odd_x, &mut buf);
                let p = lattice(usize::from(odd_x), crop.y + y);
                row_moments(&buf[0], &buf[1], &buf[2], &mut per_channel[p]);
            }
        }
    }
    out
}

/// A demosaicing trace the analysis accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfaTrace {
    /// The full Bayer pattern, in all three channels, with its phase.
    Bayer(BayerPhase),
    /// Only green's quincunx lattice (what JPEG chroma subsampling leaves): the two phases
    /// that put green there.
    GreenLattice([BayerPhase; 2]),
}

/// Full pattern: the best phase's mean contrast (nepers).
const BAYER_MIN_SCORE: f64 = 0.3;
/// Full pattern: every channel's contrast under the best phase.
const BAYER_MIN_CHANNEL: f64 = 0.1;
/// Full pattern: lead of the best phase over the second best.
const BAYER_MIN_MARGIN: f64 = 0.1;
/// Green lattice alone: |contrast| in nepers. Twice the largest value seen on the corpus's
/// AI images (0.11, raw or normalised); 12 of 66 normalised camera photos reach it.
const GREEN_MIN_CONTRAST: f64 = 0.2;

/// Green lattice alone: the two sites of each diagonal must agree to within this share of
/// the contrast, as on a quincunx; one odd site out of four is a 2× up-sampling pattern.
const QUINCUNX_SYMMETRY: f64 = 0.5;

/// What the demosaicing analysis measured.
#[derive(Debug, Clone, PartialEq)]
pub struct CfaStats {
    /// The Bayer phase that best explains the pattern of prediction errors.
    pub phase: BayerPhase,
    /// Mean over the three channels of (mean log error where the phase says the channel was
    /// measured) − (mean log error where it was interpolated), in nepers; 0 without CFA traces.
    pub score: f64,
    /// The same contrast for the weakest channel under the best phase: a full Bayer pattern
    /// makes all three positive.
    pub min_channel: f64,
    /// Best phase's score minus the second best's.
    pub margin: f64,
    /// Green's quincunx contrast in nepers (positive: green measured on the anti-diagonal,
    /// as in RGGB/BGGR). This is what survives JPEG's chroma subsampling, which averages the
    /// red and blue lattices away but keeps the luminance, mostly green, at full resolution.
    pub green: f64,
    /// Crops whose own best phase is the overall one.
    pub agreeing_crops: usize,
    /// Crops whose green contrast has the overall sign.
    pub green_agreeing_crops: usize,
    /// Crops analysed.
    pub crops: usize,
    /// `ln(mean squared error + floor)` per channel and lattice position.
    pub log_error: [[f64; 4]; 3],
    /// The fitted predictor weights `(w₁, w₂)` per channel and lattice position.
    pub weights: [[[f64; 2]; 4]; 3],
}

impl CfaStats {
    /// The trace these statistics show: a full Bayer pattern when every channel's error is
    /// larger where the phase says it was measured and most crops agree on the phase; else
    /// the green lattice when its contrast is clear and most crops agree on its sign.
    pub fn trace(&self) -> Option<CfaTrace> {
        let majority = |n: usize| 2 * n > self.crops;
        if self.score >= BAYER_MIN_SCORE
            && self.min_channel >= BAYER_MIN_CHANNEL
            && self.margin >= BAYER_MIN_MARGIN
            && majority(self.agreeing_crops)
        {
            return Some(CfaTrace::Bayer(self.phase));
        }
        let g = &self.log_error[1];
        let asymmetry = (g[0] - g[3]).abs().max((g[1] - g[2]).abs());
        if self.green.abs() >= GREEN_MIN_CONTRAST
            && asymmetry <= QUINCUNX_SYMMETRY * self.green.abs()
            && majority(self.green_agreeing_crops)
        {
            let pair = if self.green > 0.0 {
                [BayerPhase::Rggb, BayerPhase::Bggr]
            } else {
                [BayerPhase::Grbg, BayerPhase::Gbrg]
            };
            return Some(CfaTrace::GreenLattice(pair));
        }
        None
    }
}

fn log_errors(moments: &[[Moments; 4]; 3]) -> ([[f64; 4]; 3], [[[f64; 2]; 4]; 3]) {
    let mut log_error = [[0.0; 4]; 3];
    let mut weights = [[[0.0; 2]; 4]; 3];
    for c in 0..3 {
        for p in 0..4 {
            let (w, mse) = solve(&moments[c][p]);
            log_error[c][p] = (mse + ERROR_FLOOR).ln();
            weights[c][p] = w;
        }
    }
    (log_error, weights)
}

/// Per-channel contrast (measured − interpolated mean log error) under a phase.
fn channel_contrasts(log_error: &[[f64; 4]; 3], phase: BayerPhase) -> [f64; 3] {
    let tile = phase.tile();
    let mut out = [0.0; 3];
    for (c, slot) in out.iter_mut().enumerate() {
        let (mut measured, mut nm, mut interp, mut ni) = (0.0, 0.0, 0.0, 0.0);
        for (p, &colour) in tile.iter().enumerate() {
            if colour == c {
                measured += log_error[c][p];
                nm += 1.0;
            } else {
                interp += log_error[c][p];
                ni += 1.0;
            }
        }
        *slot = measured / nm - interp / ni;
    }
    out
}

fn phase_scores(log_error: &[[f64; 4]; 3]) -> [f64; 4] {
    BayerPhase::ALL.map(|ph| channel_contrasts(log_error, ph).iter().sum::<f64>() / 3.0)
}

fn green_contrast(log_error: &[[f64; 4]; 3]) -> f64 {
    (log_error[1][1] + log_error[1][2] - log_error[1][0] - log_error[1][3]) / 2.0
}

fn best(scores: &[f64; 4]) -> (usize, f64) {
    let mut order = [0usize, 1, 2, 3];
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    (order[0], scores[order[0]] - scores[order[1]])
}

/// Measure the demosaicing pattern on the given crops of the window (each at least 8 px a
/// side, on even coordinates). `None` without crops.
pub fn measure(views: &Views, crops: &[Crop]) -> Option<CfaStats> {
    let crops: Vec<&Crop> = crops.iter().filter(|c| c.side >= 8).collect();
    if crops.is_empty() {
        return None;
    }
    let per_crop: Vec<[[Moments; 4]; 3]> = crops.iter().map(|c| crop_moments(views, c)).collect();
    let mut total = [[[0.0; 7]; 4]; 3];
    for m in &per_crop {
        for c in 0..3 {
            for p in 0..4 {
                for k in 0..7 {
                    total[c][p][k] += m[c][p][k];
                }
            }
        }
    }
    let (log_error, weights) = log_errors(&total);
    let scores = phase_scores(&log_error);
    let (idx, margin) = best(&scores);
    let phase = BayerPhase::ALL[idx];
    let contrasts = channel_contrasts(&log_error, phase);
    let green = green_contrast(&log_error);
    let (mut agreeing_crops, mut green_agreeing_crops) = (0, 0);
    for m in &per_crop {
        let (le, _) = log_errors(m);
        agreeing_crops += usize::from(best(&phase_scores(&le)).0 == idx);
        green_agreeing_crops += usize::from(green_contrast(&le) * green > 0.0);
    }
    Some(CfaStats {
        phase,
        score: scores[idx],
        min_channel: contrasts.iter().copied().fold(f64::INFINITY, f64::min),
        margin,
        green,
        agreeing_crops,
        green_agreeing_crops,
        crops: crops.len(),
        log_error,
        weights,
    })
}

/// Mean squared prediction error (grey levels²) at measured green sites below which a
/// heatmap block is too flat to judge.
const MIN_BLOCK_TEXTURE: f64 = 1.0;

/// Side of the heatmap blocks.
pub const HEATMAP_BLOCK: usize = 64;

/// Per-block demosaicing strength over the whole window, inverted into suspicion: 0 where
/// the block shows the image's green-lattice contrast in full, 1 where it has none (a pasted
/// or regenerated region); NaN where the block is too flat to tell. Green channel only, with
/// the weights fitted on the crops.
pub fn heatmap(views: &Views, stats: &CfaStats) -> Option<Heatmap> {
    let (w, h) = (views.width, views.height);
    let (cols, rows) = (w / HEATMAP_BLOCK, h / HEATMAP_BLOCK);
    let global = stats.green.abs();
    if cols == 0 || rows == 0 || global < 1e-3 {
        return None;
    }
    let raw = views.image.as_raw();
    let green: Vec<f32> = raw.chunks_exact(3).map(|p| f32::from(p[1])).collect();
    let green_row = |y: usize| &green[y * w..(y + 1) * w];
    let weights = stats.weights[1].map(|wt| wt.map(|v| v as f32));
    // green measured on the anti-diagonal (positions 1, 2) when the contrast is positive
    let measured_site = |p: usize| (p == 1 || p == 2) == (stats.green > 0.0);
    // squared errors per block column and lattice position, one band of blocks at a time
    let mut e = vec![[0f64; 4]; cols];
    let mut n = vec![[0f64; 4]; cols];
    let mut errs = vec![0f32; w];
    let mut values = Vec::with_capacity(cols * rows);
    for by in 0..rows {
        e.iter_mut().chain(n.iter_mut()).for_each(|v| *v = [0.0; 4]);
        let y0 = by * HEATMAP_BLOCK;
        // half the rows (pairs of rows, so both row parities) are enough to rank the blocks
        for y in (y0.max(1)..(y0 + HEATMAP_BLOCK).min(h - 1)).filter(|y| y % 4 < 2) {
            let (up, mid, down) = (green_row(y - 1), green_row(y), green_row(y + 1));
            let wts = [weights[lattice(0, y)], weights[lattice(1, y)]];
            for x in 1..w - 1 {
                let wt = wts[x & 1];
                let m = (up[x - 1] + up[x + 1] + down[x - 1] + down[x + 1]) * 0.25;
                let f1 = mid[x - 1] + mid[x + 1] - 2.0 * m;
                let f2 = up[x] + down[x] - 2.0 * m;
                let err = mid[x] - m - wt[0] * f1 - wt[1] * f2;
                errs[x] = err * err;
            }
            for (bx, (eb, nb)) in e.iter_mut().zip(n.iter_mut()).enumerate() {
                let x0 = (bx * HEATMAP_BLOCK).max(1);
                let x1 = ((bx + 1) * HEATMAP_BLOCK).min(w - 1);
                let mut acc = [0f32; 2];
                for (x, err) in errs.iter().enumerate().take(x1).skip(x0) {
                    acc[x & 1] += err;
                }
                for (parity, sum) in acc.iter().enumerate() {
                    let p = lattice(parity, y);
                    eb[p] += f64::from(*sum);
                    nb[p] += (((x1 - x0) + usize::from(x0 % 2 == parity)) / 2) as f64;
                }
            }
        }
        for (e, n) in e.iter().zip(&n) {
            let (mut measured, mut interp, mut measured_mse) = (0.0, 0.0, 0.0);
            for p in 0..4 {
                let mse = e[p] / n[p].max(1.0);
                let le = (mse + ERROR_FLOOR).ln() / 2.0;
                if measured_site(p) {
                    measured += le;
                    measured_mse += mse / 2.0;
                } else {
                    interp += le;
                }
            }
            if measured_mse < MIN_BLOCK_TEXTURE {
                // a flat block carries no demosaicing trace either way
                values.push(f32::NAN);
                continue;
            }
            values.push((1.0 - ((measured - interp) / global).clamp(0.0, 1.0)) as f32);
        }
    }
    Some(Heatmap { block: HEATMAP_BLOCK, cols, rows, values })
}
