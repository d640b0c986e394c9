//! The physics module on images whose camera-pipeline traces we construct ourselves: a Bayer
//! mosaic with a known phase, signal-dependent against constant noise, and the inputs it must
//! refuse to judge (tiny, heavily re-compressed, resampled).

mod common;

use common::{png, read_shared, shared_rgb, views_of};
use image::{imageops, Rgb, RgbImage};
use tellscan::eval::transform::encode_jpeg;
use tellscan::forensics::physics::{self, BayerPhase};
use tellscan::forensics::report::Flag;
use tellscan::forensics::views::{PixelFinding, Views};

/// A camera JPEG from the shared corpus (Nikon E990, 2048×1536), relative to `../shared/`.
const PHOTO: &str = "corpus/real/metadata-extractor/jpg/Nikon E990.jpg";

fn analyse_png(img: &RgbImage) -> (Views, PixelFinding) {
    let views = views_of(&png(img));
    let finding = physics::analyse(&views);
    (views, finding)
}

/// The corpus photo down-scaled 2× (Triangle): its own demosaicing traces are gone.
fn downscaled_photo() -> RgbImage {
    let photo = shared_rgb(PHOTO);
    imageops::resize(&photo, photo.width() / 2, photo.height() / 2, imageops::FilterType::Triangle)
}

/// Colour measured at (x, y) under a phase, as the test defines the phases (independently of
/// the module): the 2×2 tile read row by row from the top-left.
fn sensed(phase: BayerPhase, x: u32, y: u32) -> usize {
    let tile: [usize; 4] = match phase {
        BayerPhase::Rggb => [0, 1, 1, 2],
        BayerPhase::Grbg => [1, 0, 2, 1],
        BayerPhase::Gbrg => [1, 2, 0, 1],
        BayerPhase::Bggr => [2, 1, 1, 0],
    };
    tile[((x & 1) | ((y & 1) << 1)) as usize]
}

/// Re-mosaic with a Bayer pattern and demosaic bilinearly: every missing sample is the mean
/// of its nearest measured neighbours of that colour (left/right, up/down, the four
/// neighbours for green, or the four diagonals). Borders mirror with period 2.
fn bayer_bilinear(img: &RgbImage, phase: BayerPhase) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mirror = |v: i64, n: i64| {
        if v < 0 {
            -v
        } else if v >= n {
            2 * (n - 1) - v
        } else {
            v
        }
    };
    let sample = |x: i64, y: i64, c: usize| -> Option<f64> {
        let (x, y) = (mirror(x, w) as u32, mirror(y, h) as u32);
        (sensed(phase, x, y) == c).then(|| f64::from(img.get_pixel(x, y)[c]))
    };
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let (xi, yi) = (i64::from(x), i64::from(y));
        let mut out = [0u8; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let mean = |pts: &[(i64, i64)]| -> Option<f64> {
                let vals: Option<Vec<f64>> =
                    pts.iter().map(|&(dx, dy)| sample(xi + dx, yi + dy, c)).collect();
                vals.map(|v| v.iter().sum::<f64>() / v.len() as f64)
            };
            let v = sample(xi, yi, c)
                .or_else(|| mean(&[(-1, 0), (1, 0), (0, -1), (0, 1)]))
                .or_else(|| mean(&[(-1, 0), (1, 0)]))
                .or_else(|| mean(&[(0, -1), (0, 1)]))
                .or_else(|| mean(&[(-1, -1), (1, -1), (-1, 1), (1, 1)]))
                .expect("a Bayer tile always has a measured neighbour");
            *o = v.round().clamp(0.0, 255.0) as u8;
        }
        Rgb(out)
    })
}

#[test]
fn bilinear_bayer_mosaic_is_found_with_its_phase() {
    let photo = downscaled_photo();
    for phase in [BayerPhase::Rggb, BayerPhase::Gbrg] {
        let (views, finding) = analyse_png(&bayer_bilinear(&photo, phase));
        let report = &finding.report;
        assert!(!report.abstained, "{phase}: {report:?}");
        assert!(report.flags.contains(&Flag::CfaPresent), "{phase}: {report:?}");
        assert!(!report.flags.contains(&Flag::NoCfaTraces), "{phase}: {report:?}");
        assert!(report.explanations.iter().any(|e| e.contains(phase.name())), "{phase}: {report:?}");
        let (found, strength) = physics::cfa_phase(&views).expect("a phase is reported");
        assert_eq!(found, phase);
        assert!(strength > 1.0, "{phase}: contrast {strength}");
        assert!(report.score < 0.5, "{phase}: a camera pattern points away from AI: {report:?}");
        // the map: the whole frame carries the pattern, so no block is strongly suspicious
        let map = finding.heatmap.expect("a CFA map");
        let judged: Vec<f32> = map.values.iter().copied().filter(|v| v.is_finite()).collect();
        assert!(!judged.is_empty());
        let mean = judged.iter().sum::<f32>() / judged.len() as f32;
        assert!(mean < 0.3, "{phase}: mean suspicion {mean}");
    }
}

#[test]
fn downscaled_photo_has_no_demosaicing_traces() {
    let (views, finding) = analyse_png(&downscaled_photo());
    assert!(!finding.report.flags.contains(&Flag::CfaPresent), "{:?}", finding.report);
    assert_eq!(physics::cfa_phase(&views), None);
}

/// 2× up-sampling that keeps the source samples on even sites and averages between them
/// (corner-aligned bilinear, as some generators' up-sampling layers do).
fn upsample2(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    RgbImage::from_fn(2 * w, 2 * h, |x, y| {
        let (x0, y0) = ((x / 2).min(w - 1), (y / 2).min(h - 1));
        let (x1, y1) = (
            if x % 2 == 1 { (x0 + 1).min(w - 1) } else { x0 },
            if y % 2 == 1 { (y0 + 1).min(h - 1) } else { y0 },
        );
        let mut out = [0u8; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let s: u32 = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)]
                .iter()
                .map(|&(a, b)| u32::from(img.get_pixel(a, b)[c]))
                .sum();
            *o = ((s + 2) / 4) as u8;
        }
        Rgb(out)
    })
}

#[test]
fn twofold_upsampling_is_not_mistaken_for_a_mosaic() {
    // one interpolation-free site in four, in every channel: a period-2 pattern, but not a
    // Bayer one (green is not on a quincunx, red and blue do not oppose each other)
    let photo = imageops::resize(&downscaled_photo(), 512, 384, imageops::FilterType::Triangle);
    let (views, finding) = analyse_png(&upsample2(&photo));
    let cfa = physics::measure(&views).cfa.expect("measured");
    assert!(cfa.green.abs() > 0.2, "the pattern is there: {cfa:?}");
    assert!(!finding.report.flags.contains(&Flag::CfaPresent), "{:?}", finding.report);
    assert_eq!(physics::cfa_phase(&views), None);
}

#[test]
fn pasted_region_without_mosaic_lights_up_the_map() {
    let photo = downscaled_photo();
    let mut img = bayer_bilinear(&photo, BayerPhase::Rggb);
    // paste the un-mosaiced photo into a 256×256 square on the 64-px block grid
    let (x0, y0) = (384u32, 256u32);
    for y in y0..y0 + 256 {
        for x in x0..x0 + 256 {
            img.put_pixel(x, y, *photo.get_pixel(x, y));
        }
    }
    let (_, finding) = analyse_png(&img);
    assert!(finding.report.flags.contains(&Flag::CfaPresent), "{:?}", finding.report);
    let map = finding.heatmap.expect("a CFA map");
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for (i, &v) in map.values.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        let (bx, by) = ((i % map.cols * map.block) as u32, (i / map.cols * map.block) as u32);
        let pasted = (x0..x0 + 256).contains(&bx) && (y0..y0 + 256).contains(&by);
        if pasted {
            inside.push(v)
        } else {
            outside.push(v)
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    assert!(mean(&inside) > 0.7 && mean(&outside) < 0.3, "inside {inside:?} outside mean {}", mean(&outside));
}

/// Deterministic standard normal samples: xorshift64* and Box-Muller.
struct Gauss(u64);

impl Gauss {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A smooth 768×768 picture: a vertical ramp over the full grey range beside a blurred,
/// down-scaled photo.
fn smooth_picture() -> RgbImage {
    let photo =
        imageops::blur(&imageops::resize(&downscaled_photo(), 384, 288, imageops::FilterType::Triangle), 2.0);
    RgbImage::from_fn(768, 768, |x, y| {
        if x < 384 || y >= 288 * 2 {
            let v = 8.0 + 240.0 * f64::from(y) / 767.0;
            let tint = f64::from(x) / 767.0 * 10.0;
            Rgb([(v - tint) as u8, v as u8, (v * 0.9 + tint) as u8])
        } else {
            let p = photo.get_pixel(x - 384, y / 2);
            *p
        }
    })
}

/// Add noise of variance `var(intensity)` to every sample.
fn add_noise(img: &RgbImage, seed: u64, var: impl Fn(f64) -> f64) -> RgbImage {
    let mut rng = Gauss(seed);
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in 0..3 {
            let i = f64::from(p[c]);
            p[c] = (i + var(i).sqrt() * rng.normal()).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

const SHOT: f64 = 0.08;
const READ: f64 = 0.5;

#[test]
fn poisson_gaussian_noise_fits_the_sensor_model() {
    let noisy = add_noise(&smooth_picture(), 0x9E37_79B9_7F4A_7C15, |i| SHOT * i + READ);
    let (views, finding) = analyse_png(&noisy);
    let report = &finding.report;
    assert!(!report.abstained, "{report:?}");
    assert!(!report.flags.contains(&Flag::NoiseModelMismatch), "{report:?}");
    let noise = physics::measure(&views).noise.expect("noise measured");
    assert!(noise.slope > 0.0 && noise.rise > 1.0, "{noise:?}");
}

#[test]
fn constant_gaussian_noise_does_not_fit_the_sensor_model() {
    let picture = smooth_picture();
    // the same average strength as the Poisson-Gaussian test
    let mean_i = picture.pixels().flat_map(|p| p.0).map(f64::from).sum::<f64>() / (768.0 * 768.0 * 3.0);
    let var = SHOT * mean_i + READ;
    let noisy = add_noise(&picture, 0x9E37_79B9_7F4A_7C15, |_| var);
    let (views, finding) = analyse_png(&noisy);
    assert!(finding.report.flags.contains(&Flag::NoiseModelMismatch), "{:?}", finding.report);
    let noise = physics::measure(&views).noise.expect("noise measured");
    assert!(noise.rise.abs() < 0.5, "{noise:?}");
}

#[test]
fn abstains_on_a_tiny_image() {
    let tiny = imageops::resize(&downscaled_photo(), 64, 64, imageops::FilterType::Triangle);
    let (_, finding) = analyse_png(&tiny);
    assert!(finding.report.abstained);
    assert_eq!(finding.report.score, 0.5);
    assert!(finding.report.explanations.iter().any(|e| e.contains("too small")), "{:?}", finding.report);
}

#[test]
fn abstains_on_a_heavily_recompressed_image() {
    let jpeg = encode_jpeg(&bayer_bilinear(&downscaled_photo(), BayerPhase::Rggb), 30);
    let views = views_of(&jpeg);
    assert_eq!(views.jpeg_quality, Some(30));
    let finding = physics::analyse(&views);
    assert!(finding.report.abstained);
    assert!(finding.report.flags.is_empty());
    assert!(
        finding.report.explanations.iter().any(|e| e.contains("JPEG quality 30")),
        "{:?}",
        finding.report
    );
}

#[test]
fn abstains_on_an_upscaled_image() {
    let photo = downscaled_photo();
    let up = imageops::resize(
        &photo,
        photo.width() * 3 / 2,
        photo.height() * 3 / 2,
        imageops::FilterType::Triangle,
    );
    let (views, finding) = analyse_png(&up);
    assert!(
        finding.report.abstained,
        "{:?} (peak {})",
        finding.report,
        physics::measure(&views).resampling_peak
    );
    assert!(finding.report.explanations.iter().any(|e| e.contains("resampled")), "{:?}", finding.report);
    assert!(finding.report.flags.contains(&Flag::Resampled), "{:?}", finding.report);
}

#[test]
fn camera_jpeg_is_judged_and_timed() {
    let views = views_of(&read_shared(PHOTO));
    let finding = physics::analyse(&views);
    assert!(!finding.report.abstained, "{:?}", finding.report);
    assert!(finding.report.elapsed_ms > 0.0);
    assert!(!finding.report.explanations.is_empty());
}

#[test]
fn monochrome_photo_is_not_called_aberration_free() {
    let photo = downscaled_photo();
    let grey = RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
        let p = photo.get_pixel(x, y);
        let l = (0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).round() as u8;
        Rgb([l; 3])
    });
    let (views, finding) = analyse_png(&grey);
    assert!(physics::measure(&views).aberration.is_none());
    assert!(!finding.report.flags.contains(&Flag::NoChromaticAberration), "{:?}", finding.report);
}
