//! Frequency module: camera photos are not flagged, their ×2 up-sampled copies are, the JPEG
//! grid alone is not, the heatmap finds an up-sampled patch, and the module abstains, saying
//! why, where its traces cannot survive (64×64, JPEG quality 30).
//!
//! Ground truth is built from camera JPEGs of the shared corpus: centre 1024×1024 crop at
//! native resolution, down-scaled ×0.5 (triangle filter) and up-scaled ×2 back with
//! `FilterType::Nearest` or `FilterType::Triangle` (bilinear), then stored lossless (PNG) or
//! as JPEG q90, the realistic case. The originals go through the same storage.

mod common;

use common::{png, read_shared, shared_rgb, views_of};
use image::imageops::{self, FilterType};
use image::RgbImage;
use tellscan::eval::transform::{centre_crop, encode_jpeg};
use tellscan::forensics::frequency;
use tellscan::forensics::report::{Flag, ModuleReport};
use tellscan::forensics::views::PixelFinding;

/// Camera JPEGs of 2048-2576 px from three makers (a compact of 2000, a compact of 2010, a
/// phone of 2019).
const PHOTOS: [&str; 3] = [
    "corpus/real/metadata-extractor/jpg/Nikon E990.jpg",
    "corpus/real/metadata-extractor/jpg/Canon PowerShot A720 IS.jpg",
    "corpus/real/metadata-extractor/jpg/Samsung SM-J327T1.jpg",
];

fn analyse(bytes: &[u8]) -> PixelFinding {
    frequency::analyse(&views_of(bytes))
}

fn flagged(r: &ModuleReport) -> bool {
    r.flags.contains(&Flag::PeriodicPeaks) || r.flags.contains(&Flag::GridArtifact)
}

/// The centre 1024×1024 of a corpus photo at native resolution.
fn photo_crop(rel: &str) -> RgbImage {
    centre_crop(&shared_rgb(rel), 1024).expect("corpus photo is at least 1024 px")
}

/// Down-scale ×0.5, then up-scale ×`factor` back to the original size with `filter`.
fn resampled(crop: &RgbImage, factor: u32, filter: FilterType) -> RgbImage {
    let (w, h) = crop.dimensions();
    let small = imageops::resize(crop, w / factor, h / factor, FilterType::Triangle);
    imageops::resize(&small, w, h, filter)
}

#[test]
fn camera_photos_as_they_come_are_not_flagged() {
    for rel in PHOTOS {
        let r = analyse(&read_shared(rel)).report;
        assert!(!r.abstained, "{rel}: {r:?}");
        assert!(!flagged(&r), "{rel} flagged: {r:?}");
    }
}

/// Shared body of the two up-sampling tests: `store` encodes both the original crop and its
/// up-sampled copies.
fn upsampled_copies_are_flagged_and_score_higher(store: impl Fn(&RgbImage) -> Vec<u8>) {
    for rel in PHOTOS {
        let crop = photo_crop(rel);
        let original = analyse(&store(&crop)).report;
        assert!(!original.abstained && !flagged(&original), "{rel} original: {original:?}");
        for (name, filter) in [("nearest", FilterType::Nearest), ("bilinear", FilterType::Triangle)] {
            let up = analyse(&store(&resampled(&crop, 2, filter))).report;
            assert!(!up.abstained, "{rel} {name}: {up:?}");
            assert!(up.flags.contains(&Flag::PeriodicPeaks), "{rel} {name} not flagged: {up:?}");
            assert!(up.flags.contains(&Flag::GridArtifact), "{rel} {name}: no 2-D grid: {up:?}");
            assert!(
                up.score > original.score + 0.1,
                "{rel} {name}: score {} not above the original's {}",
                up.score,
                original.score
            );
        }
    }
}

#[test]
fn png_camera_crops_upsampled_2x_nearest_and_bilinear_are_flagged_and_score_higher() {
    upsampled_copies_are_flagged_and_score_higher(png);
}

#[test]
fn jpeg_q90_camera_crops_upsampled_2x_nearest_and_bilinear_are_flagged_and_score_higher() {
    upsampled_copies_are_flagged_and_score_higher(|img| encode_jpeg(img, 90));
}

#[test]
fn jpeg_q90_bilinear_4x_upsampling_is_flagged_beyond_the_jpeg_grid() {
    let crop = photo_crop(PHOTOS[0]);
    let r = analyse(&encode_jpeg(&resampled(&crop, 4, FilterType::Triangle), 90)).report;
    assert!(r.flags.contains(&Flag::PeriodicPeaks), "{r:?}");
    assert!(r.explanations.iter().any(|e| e.contains("period of 4")), "{r:?}");
}

#[test]
fn the_jpeg_block_grid_alone_is_not_flagged() {
    // a camera crop and a rendered image without camera history, both compressed hard enough
    // for the 8×8 grid to show but above the abstention threshold
    let render = shared_rgb("corpus/ai/comfyui/sdxl/sdxl_simple_example.png");
    for (name, img) in [("camera", photo_crop(PHOTOS[1])), ("render", render)] {
        for q in [60u8, 75] {
            let v = views_of(&encode_jpeg(&img, q));
            let m = frequency::measure(&v).expect("quality 60+ is measured");
            assert!(m.gains.total.period8[0] > m.gains.total.period2[0], "{name} q{q}: {:?}", m.gains.total);
            let r = frequency::analyse(&v).report;
            assert!(!r.abstained && !flagged(&r), "{name} q{q}: {r:?}");
        }
    }
}

#[test]
fn the_heatmap_points_at_an_upsampled_patch() {
    let mut img = photo_crop(PHOTOS[2]);
    // replace the 256×256 patch at (512, 256) with a nearest ×2 up-sampled copy of itself
    let patch = imageops::crop_imm(&img, 512, 256, 256, 256).to_image();
    imageops::replace(&mut img, &resampled(&patch, 2, FilterType::Nearest), 512, 256);
    let finding = analyse(&encode_jpeg(&img, 90));
    let map = finding.heatmap.expect("the module localises");
    assert_eq!((map.block, map.cols, map.rows), (128, 8, 8));
    let top = map.top_regions(4, "frequency");
    for r in &top {
        assert!((512..768).contains(&r.x) && (256..512).contains(&r.y), "{r:?} outside the patch; {top:?}");
    }
    assert!(top[3].score > 0.8, "{top:?}");
    let outside = map
        .values
        .iter()
        .enumerate()
        .filter(|(i, _)| !(4..6).contains(&(i % 8)) || !(2..4).contains(&(i / 8)));
    assert!(outside.clone().all(|(_, v)| *v < 0.5), "{:?}", map.values);
}

#[test]
fn abstains_on_a_64x64_image_and_says_why() {
    let crop = centre_crop(&photo_crop(PHOTOS[0]), 64).unwrap();
    let finding = analyse(&png(&crop));
    let r = finding.report;
    assert!(r.abstained && r.flags.is_empty(), "{r:?}");
    assert_eq!(r.score, 0.5);
    assert!(r.explanations[0].contains("64×64") && r.explanations[0].contains("128 px"), "{r:?}");
    assert!(finding.heatmap.is_none());
}

#[test]
fn abstains_on_a_quality_30_recompression_and_says_why() {
    for rel in PHOTOS {
        let r = analyse(&encode_jpeg(&photo_crop(rel), 30)).report;
        assert!(r.abstained && r.flags.is_empty(), "{rel}: {r:?}");
        assert!(r.explanations[0].contains("JPEG quality is about 30"), "{rel}: {r:?}");
    }
    // and the same pixels at quality 90 are read
    assert!(!analyse(&encode_jpeg(&photo_crop(PHOTOS[0]), 90)).report.abstained);
}

#[test]
fn abstains_on_a_flat_image() {
    let flat = RgbImage::from_pixel(300, 300, image::Rgb([90, 120, 200]));
    let r = analyse(&png(&flat)).report;
    assert!(r.abstained && r.explanations[0].contains("no fine detail"), "{r:?}");
}
