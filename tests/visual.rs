//! The visual module: splice localisation on constructed composites, abstention on inputs its
//! evidence cannot survive, and each statistic on synthetic pictures with a known answer.

mod common;

use common::{png, shared_rgb, views_of};
use image::{Rgb, RgbImage};
use tellscan::eval::transform::encode_jpeg;
use tellscan::forensics::decode::{decode, DecodeLimits};
use tellscan::forensics::report::Flag;
use tellscan::forensics::views::{Plane, Views};
use tellscan::forensics::visual::{self, blocks, colour, edges};

/// A picture of the shared corpus, decoded.
fn corpus_rgb(rel: &str) -> RgbImage {
    shared_rgb(&format!("corpus/{rel}"))
}

/// A small deterministic generator (xorshift) and a Gaussian from it (Box-Muller).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    fn gauss(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    }
}

/// A soft, textured grey scene (slow gradients and blobs) plus Gaussian noise whose σ is
/// given per pixel.
fn noisy_scene(w: u32, h: u32, sigma: impl Fn(u32, u32) -> f32, seed: u64) -> RgbImage {
    let mut rng = Rng(seed);
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let base = 110.0 + 40.0 * (fx / 97.0).sin() * (fy / 131.0).cos();
        let n = sigma(x, y) * rng.gauss();
        let v = |off: f32| (base + off + n).round().clamp(0.0, 255.0) as u8;
        Rgb([v(6.0), v(0.0), v(-8.0)])
    })
}

// ---------------------------------------------------------------- splices

/// Paste the centre 256×256 of an AI render into a camera photo at `(px, py)` (image
/// coordinates); return the composite.
fn splice(host: &str, donor: &str, px: u32, py: u32) -> RgbImage {
    let mut comp = corpus_rgb(host);
    let src = corpus_rgb(donor);
    let (sx, sy) = (src.width() / 2 - 128, src.height() / 2 - 128);
    for y in 0..256 {
        for x in 0..256 {
            comp.put_pixel(px + x, py + y, *src.get_pixel(sx + x, sy + y));
        }
    }
    comp
}

/// Analyse an encoded composite and check that the heatmap's top region overlaps the pasted
/// square (both in window coordinates).
fn assert_splice_on_top(bytes: &[u8], px: u32, py: u32, what: &str) {
    let views = views_of(bytes);
    let finding = visual::analyse(&views);
    assert!(!finding.report.abstained, "{what}: abstained: {:?}", finding.report.explanations);
    let map = finding.heatmap.expect("a heatmap");
    assert_eq!((map.cols, map.rows), (views.width / map.block, views.height / map.block));
    let top = &map.top_regions(1, "visual")[0];
    let (rx, ry) = (px - views.origin.0 as u32, py - views.origin.1 as u32);
    let overlaps = top.x < rx + 256 && rx < top.x + top.width && top.y < ry + 256 && ry < top.y + top.height;
    assert!(overlaps, "{what}: top region {top:?} misses the splice at ({rx}, {ry}) 256×256");
}

#[test]
fn splice_into_a_canon_photo_is_the_top_region_as_jpeg_and_png() {
    let (host, donor) =
        ("real/metadata-extractor/jpg/Canon PowerShot A720 IS.jpg", "ai/comfyui/flux/girl_in_field.png");
    let (px, py) = (1203, 517);
    let comp = splice(host, donor, px, py);
    assert_splice_on_top(&encode_jpeg(&comp, 90), px, py, "Canon A720 + FLUX, JPEG q90");
    assert_splice_on_top(&png(&comp), px, py, "Canon A720 + FLUX, PNG");
}

#[test]
fn splice_into_a_samsung_photo_is_the_top_region_as_jpeg_and_png() {
    let (host, donor) =
        ("real/metadata-extractor/jpg/Samsung SM-J327T1.jpg", "ai/comfyui/sdxl/sdxl_simple_example.png");
    let (px, py) = (701, 1150);
    let comp = splice(host, donor, px, py);
    assert_splice_on_top(&encode_jpeg(&comp, 90), px, py, "Samsung + SDXL, JPEG q90");
    assert_splice_on_top(&png(&comp), px, py, "Samsung + SDXL, PNG");
}

#[test]
fn splice_into_a_canon_hdr_photo_is_the_top_region_as_jpeg_and_png() {
    let (host, donor) =
        ("real/exif-samples/jpg/hdr/canon_hdr_NO.jpg", "ai/comfyui/z_image/z_image_turbo_example.png");
    let (px, py) = (333, 245);
    let comp = splice(host, donor, px, py);
    assert_splice_on_top(&encode_jpeg(&comp, 90), px, py, "Canon HDR + Z-Image, JPEG q90");
    assert_splice_on_top(&png(&comp), px, py, "Canon HDR + Z-Image, PNG");
}

// ---------------------------------------------------------------- abstention

#[test]
fn abstains_on_a_64px_image() {
    let photo = corpus_rgb("real/metadata-extractor/jpg/Canon PowerShot A720 IS.jpg");
    let small = image::imageops::crop_imm(&photo, 800, 600, 64, 64).to_image();
    for bytes in [png(&small), encode_jpeg(&small, 95)] {
        let finding = visual::analyse(&views_of(&bytes));
        assert!(finding.report.abstained);
        assert!(finding.heatmap.is_none());
        assert!(finding.report.explanations[0].contains("too small"), "{:?}", finding.report.explanations);
    }
}

#[test]
fn abstains_on_a_quality_30_recompression() {
    let photo = corpus_rgb("real/metadata-extractor/jpg/Canon PowerShot A720 IS.jpg");
    let views = views_of(&encode_jpeg(&photo, 30));
    assert_eq!(views.jpeg_quality, Some(30));
    let finding = visual::analyse(&views);
    assert!(finding.report.abstained);
    assert!(
        finding.report.explanations[0].contains("compressed too hard"),
        "{:?}",
        finding.report.explanations
    );
    // the same photo at quality 90 is judged
    assert!(!visual::analyse(&views_of(&encode_jpeg(&photo, 90))).report.abstained);
}

#[test]
fn abstains_on_a_flat_picture() {
    let flat = RgbImage::from_pixel(512, 512, Rgb([90, 120, 150]));
    let finding = visual::analyse(&views_of(&png(&flat)));
    assert!(finding.report.abstained);
    assert!(finding.report.explanations[0].contains("flat"), "{:?}", finding.report.explanations);
}

// ---------------------------------------------------------------- statistics

#[test]
fn noise_consistency_flags_a_picture_with_two_noise_levels() {
    let split = noisy_scene(768, 512, |x, _| if x < 384 { 2.0 } else { 8.0 }, 7);
    let even = noisy_scene(768, 512, |_, _| 5.0, 7);
    let (vs, ve) = (views_of(&png(&split)), views_of(&png(&even)));
    let (ms, me) = (visual::measure(&vs), visual::measure(&ve));
    // per-block noise: left blocks near 2, right blocks near 8 (the median residual of
    // Gaussian noise is a fixed fraction of σ, so compare the two halves)
    let half = |m: &visual::Measurements, left: bool| {
        let v: Vec<f32> = (0..m.grid.stats.len())
            .filter(|i| ((i % m.grid.cols) * m.grid.block < 384) == left)
            .map(|i| m.grid.stats[i].noise)
            .collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    let ratio = half(&ms, false) / half(&ms, true);
    assert!((3.0..5.0).contains(&ratio), "σ 8 / σ 2 measured as {ratio}");
    assert!(ms.noise_spread > 3.0 * me.noise_spread, "{} vs {}", ms.noise_spread, me.noise_spread);
    eprintln!("DEBUG {} {} {:?}", ms.noise_spread, me.noise_spread, visual::analyse(&vs).report);
    let flags = |v: &Views| visual::analyse(v).report.flags;
    assert!(flags(&vs).contains(&Flag::NoiseInconsistent), "{:?}", flags(&vs));
    assert!(!flags(&ve).contains(&Flag::NoiseInconsistent), "{:?}", flags(&ve));
}

#[test]
fn error_levels_are_low_where_the_picture_was_already_quantised() {
    // left half JPEG-compressed at quality 80 on the same 8×8 grid, right half never compressed
    let scene = noisy_scene(512, 512, |_, _| 4.0, 11);
    let once = decode(&encode_jpeg(&scene, 80), &DecodeLimits::default()).unwrap().rgb;
    let mixed =
        RgbImage::from_fn(
            512,
            512,
            |x, y| if x < 256 { *once.get_pixel(x, y) } else { *scene.get_pixel(x, y) },
        );
    let views = views_of(&png(&mixed));
    let m = visual::measure(&views);
    assert_eq!(m.ela_quality, 80);
    let q80 = blocks::ELA_QUALITIES.iter().position(|&q| q == 80).unwrap();
    let mean = |left: bool| {
        let v: Vec<f32> = (0..m.grid.stats.len())
            .filter(|i| ((i % m.grid.cols) * m.grid.block < 256) == left)
            .map(|i| m.grid.stats[i].ela[q80])
            .collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    assert!(mean(true) < 0.5 * mean(false), "ELA left {} right {}", mean(true), mean(false));
    let report = visual::analyse(&views).report;
    assert!(report.flags.contains(&Flag::ElaInconsistent), "{:?}", report);
    // the whole picture compressed once is consistent
    let whole = visual::analyse(&views_of(&png(&once))).report;
    assert!(!whole.flags.contains(&Flag::ElaInconsistent), "{:?}", whole);
}

#[test]
fn colour_statistics_separate_vivid_from_muted_pictures() {
    // a fully saturated hue sweep against a muted, nearly grey scene
    let vivid = RgbImage::from_fn(512, 512, |x, y| {
        let h = (x + y) as f32 / 1024.0 * 6.0;
        let f = h.fract();
        let (a, b) = ((255.0 * f) as u8, (255.0 * (1.0 - f)) as u8);
        Rgb(match h as u32 {
            0 => [255, a, 0],
            1 => [b, 255, 0],
            2 => [0, 255, a],
            3 => [0, b, 255],
            4 => [a, 0, 255],
            _ => [255, 0, b],
        })
    });
    let muted = noisy_scene(512, 512, |_, _| 3.0, 3);
    let (cv, cm) =
        (colour::colour_stats(&views_of(&png(&vivid))), colour::colour_stats(&views_of(&png(&muted))));
    assert!(cv.mean_saturation > 0.9 && cm.mean_saturation < 0.2, "{cv:?} {cm:?}");
    assert!(cv.colourfulness > 100.0 && cm.colourfulness < 20.0, "{cv:?} {cm:?}");
    assert!(cv.hue_entropy > 0.9, "{cv:?}");
    assert!(cv.vivid > 0.9 && cm.vivid < 0.01, "{cv:?} {cm:?}");
    let report = visual::analyse(&views_of(&png(&vivid))).report;
    assert!(report.flags.contains(&Flag::ColorAnomaly), "{report:?}");
    let report = visual::analyse(&views_of(&png(&muted))).report;
    assert!(!report.flags.contains(&Flag::ColorAnomaly), "{report:?}");
}

#[test]
fn skin_smoothing_flags_plastic_skin_but_not_textured_skin() {
    // a skin-toned disc in a noisy grey scene: perfectly smooth, or as noisy as the rest
    let picture = |skin_sigma: f32| {
        let mut rng = Rng(5);
        RgbImage::from_fn(512, 512, |x, y| {
            let (dx, dy) = (x as f32 - 256.0, y as f32 - 256.0);
            let skin = dx * dx + dy * dy < 150.0 * 150.0;
            let (base, sigma) =
                if skin { ([224.0, 172.0, 140.0], skin_sigma) } else { ([120.0, 122.0, 125.0], 4.0) };
            let n = sigma * rng.gauss();
            Rgb(base.map(|b: f32| (b + n).round().clamp(0.0, 255.0) as u8))
        })
    };
    assert!(colour::is_skin(224, 172, 140) && !colour::is_skin(120, 122, 125));
    let smooth = views_of(&png(&picture(0.0)));
    let textured = views_of(&png(&picture(4.0)));
    let skin = |v: &Views| colour::skin_stats(v, &blocks::measure_cells(v));
    let (ss, st) = (skin(&smooth), skin(&textured));
    assert!(ss.coverage > 0.2, "{ss:?}");
    assert!(ss.skin_noise < 0.3 * ss.reference_noise, "{ss:?}");
    assert!(st.skin_noise > 0.7 * st.reference_noise, "{st:?}");
    assert!(visual::analyse(&smooth).report.flags.contains(&Flag::SkinSmoothing));
    assert!(!visual::analyse(&textured).report.flags.contains(&Flag::SkinSmoothing));
}

#[test]
fn edge_profiles_measure_halo_ringing_and_roughness() {
    // vertical step edges every 64 px: clean, with a sharpening halo, and dissolving into noise
    let plane = |profile: &dyn Fn(i32) -> f32, noise: f32| {
        let mut rng = Rng(9);
        let (w, h) = (512usize, 256usize);
        let mut data = Vec::with_capacity(w * h);
        for _ in 0..h {
            for x in 0..w {
                let d = (x % 64) as i32 - 32; // edge at x ≡ 32 (mod 64), rising
                let v = if (x / 64) % 2 == 0 { profile(d) } else { profile(-d) };
                data.push(v + noise * rng.gauss());
            }
        }
        Plane { width: w, height: h, data }
    };
    let step = |d: i32| if d >= 0 { 180.0 } else { 60.0 };
    let halo = |d: i32| {
        step(d)
            + if d == 0 || d == 1 {
                30.0
            } else if d == -1 || d == -2 {
                -30.0
            } else {
                0.0
            }
    };
    let clean = edges::edge_stats_of(&plane(&step, 0.0));
    let sharpened = edges::edge_stats_of(&plane(&halo, 0.0));
    let dissolving = edges::edge_stats_of(&plane(&step, 25.0));
    assert!(clean.count > 100, "{clean:?}");
    assert!(clean.halo < 0.02 && clean.ringing < 0.02, "{clean:?}");
    assert!(clean.width <= 2.0, "{clean:?}");
    assert!(sharpened.halo > 0.3, "{sharpened:?}");
    assert!(dissolving.roughness > 0.1 && dissolving.roughness > 5.0 * clean.roughness, "{dissolving:?}");
}

#[test]
fn heatmap_covers_the_window_in_32px_blocks() {
    let scene = noisy_scene(700, 300, |_, _| 3.0, 1);
    let views = views_of(&png(&scene));
    let finding = visual::analyse(&views);
    let map = finding.heatmap.unwrap();
    assert_eq!((map.block, map.cols, map.rows), (32, 21, 9));
    assert!(map.values.iter().all(|v| !v.is_finite() || (0.0..=1.0).contains(v)));
    assert!(!finding.report.abstained);
    assert!((0.0..=1.0).contains(&finding.report.score));
}
