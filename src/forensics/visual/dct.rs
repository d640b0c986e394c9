//! The 8×8 JPEG DCT (orthonormal DCT-II, exactly JPEG's) and the IJG quantisation tables,
//! for error-level analysis done in the DCT domain on the luminance plane.

/// ITU-T T.81 Annex K luminance quantisation table, natural (row-major) order.
pub const STD_LUMA: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17,
    22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78,
    87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// The IJG luminance table at `quality` (1-100), as `jpeg_set_quality` scales it.
pub fn luma_table(quality: u8) -> [f32; 64] {
    let q = u32::from(quality.clamp(1, 100));
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    STD_LUMA.map(|b| ((u32::from(b) * scale + 50) / 100).clamp(1, 255) as f32)
}

/// The orthonormal 8-point DCT-II basis, `C[k][n]`.
fn basis() -> [[f32; 8]; 8] {
    let mut c = [[0f32; 8]; 8];
    for (k, row) in c.iter_mut().enumerate() {
        let a = if k == 0 { (1.0f64 / 8.0).sqrt() } else { 0.5 };
        for (n, v) in row.iter_mut().enumerate() {
            *v = (a * ((2 * n + 1) as f64 * k as f64 * std::f64::consts::PI / 16.0).cos()) as f32;
        }
    }
    c
}

/// A reusable forward 8×8 DCT.
pub struct Dct8 {
    /// `C[k][n]`, row-major.
    c: [f32; 64],
    /// `Cᵀ`, row-major.
    ct: [f32; 64],
}

impl Default for Dct8 {
    fn default() -> Self {
        let b = basis();
        let c = std::array::from_fn(|i| b[i / 8][i % 8]);
        let ct = std::array::from_fn(|i| b[i % 8][i / 8]);
        Self { c, ct }
    }
}

impl Dct8 {
    /// Forward 2-D DCT of a level-shifted 8×8 block (row-major in, row-major out): the
    /// coefficients a JPEG encoder quantises. Both passes run along contiguous rows of eight,
    /// which the compiler vectorises.
    #[inline]
    pub fn forward(&self, x: &[f32; 64]) -> [f32; 64] {
        // t = C · X
        let mut t = [0f32; 64];
        for k in 0..8 {
            for n in 0..8 {
                let ck = self.c[k * 8 + n];
                for j in 0..8 {
                    t[k * 8 + j] += ck * x[n * 8 + j];
                }
            }
        }
        // f = t · Cᵀ
        let mut f = [0f32; 64];
        for k in 0..8 {
            for j in 0..8 {
                let tkj = t[k * 8 + j];
                for l in 0..8 {
                    f[k * 8 + l] += tkj * self.ct[j * 8 + l];
                }
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dct_is_orthonormal_and_dc_is_eight_times_the_mean() {
        let d = Dct8::default();
        let x: [f32; 64] = std::array::from_fn(|i| ((i * 37) % 23) as f32 - 11.0);
        let f = d.forward(&x);
        let ex: f32 = x.iter().map(|v| v * v).sum();
        let ef: f32 = f.iter().map(|v| v * v).sum();
        assert!((ex - ef).abs() < 1e-2 * ex);
        let mean = x.iter().sum::<f32>() / 64.0;
        assert!((f[0] - 8.0 * mean).abs() < 1e-3);
    }

    #[test]
    fn tables_match_ijg() {
        assert_eq!(luma_table(50)[0], 16.0);
        assert_eq!(luma_table(90)[0], 3.0);
        assert_eq!(luma_table(100)[63], 1.0);
    }
}
