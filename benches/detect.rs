//! Criterion benches: decode per format, each module, and the whole detector on a 1 MP and a
//! 12 MP JPEG (made from a corpus camera photo), so that the ratio of detect to decode is visible.
//!
//! Run: `cargo bench --bench detect` (reads `../shared/corpus/`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use image::imageops::{self, FilterType};
use tellscan::eval::transform::encode_jpeg;
use tellscan::forensics::decode::{decode, DecodeLimits};
use tellscan::forensics::fusion::{self, Degradation, FusionWeights};
use tellscan::forensics::metadata::{self, quant};
use tellscan::forensics::ml::{patches, MlModel, DEFAULT_WEIGHTS, INFERENCE_PATCHES};
use tellscan::forensics::views::Views;
use tellscan::forensics::{frequency, physics, visual};
use tellscan::forensics::{Detector, DetectorConfig};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/");

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{SHARED}{rel}")).expect("shared data is beside the project")
}

/// The camera photo scaled to `w`×`h` and re-encoded: (JPEG, PNG, WebP).
fn inputs(w: u32, h: u32) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let photo = decode(&read("corpus/real/metadata-extractor/jpg/HTC One.jpg"), &DecodeLimits::default())
        .expect("corpus photo decodes")
        .rgb;
    let rgb = imageops::resize(&photo, w, h, FilterType::Triangle);
    let encode = |format| {
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(rgb.clone())
            .write_to(&mut std::io::Cursor::new(&mut out), format)
            .expect("encodes");
        out
    };
    (encode_jpeg(&rgb, 90), encode(image::ImageFormat::Png), encode(image::ImageFormat::WebP))
}

fn benches(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let detector = Detector::new(&DetectorConfig::default()).expect("detector builds");
    let ml = MlModel::load(std::path::Path::new(DEFAULT_WEIGHTS)).expect("the shipped ML weights load");
    let heic = read("fixtures/heic/IMG_5195.HEIC");
    let avif = read("fixtures/c2pa/sample1.avif");
    for (label, w, h) in [("1MP", 1155u32, 866u32), ("12MP", 4000, 3000)] {
        let (jpeg, png, webp) = inputs(w, h);
        let mut group = c.benchmark_group(format!("decode/{label}"));
        group.sample_size(20);
        for (format, bytes) in [("jpeg", &jpeg), ("png", &png), ("webp", &webp)] {
            group.bench_with_input(BenchmarkId::from_parameter(format), bytes, |b, bytes| {
                b.iter(|| decode(black_box(bytes), &limits).unwrap())
            });
        }
        group.finish();

        let image = decode(&jpeg, &limits).unwrap();
        let mut group = c.benchmark_group(format!("module/{label}"));
        group.sample_size(20);
        group.bench_function("metadata", |b| b.iter(|| metadata::analyse(black_box(&image))));
        let quality = image.blocks.jpeg.as_ref().and_then(quant::estimate_quality);
        group.bench_function("views", |b| b.iter(|| Views::new(black_box(&image), quality)));
        let views = Views::new(&image, quality);
        group.bench_function("frequency", |b| b.iter(|| frequency::analyse(black_box(&views))));
        group.bench_function("visual", |b| b.iter(|| visual::analyse(black_box(&views))));
        group.bench_function("physics", |b| b.iter(|| physics::analyse(black_box(&views))));
        group.bench_function("ml", |b| b.iter(|| ml.analyse(black_box(&views))));
        // the ml module's parts: halving the window; choosing and cutting patches; cutting them
        // and the network
        group.bench_function("ml_halve", |b| b.iter(|| patches::network_view(black_box(&views.image))));
        let half = patches::network_view(&views.image);
        let corners = patches::select(&half, INFERENCE_PATCHES);
        group.bench_function("ml_patches", |b| {
            b.iter(|| {
                let corners = patches::select(black_box(&half), INFERENCE_PATCHES);
                patches::residual_patches(&half, &corners)
            })
        });
        group.bench_function("ml_network", |b| b.iter(|| ml.logits(black_box(&half), &corners)));
        group.bench_function("provenance", |b| {
            b.iter(|| detector.provenance().inspect("image/jpeg", black_box(&jpeg)))
        });
        let report = detector.detect(&jpeg).unwrap();
        group.bench_function("fusion", |b| {
            b.iter(|| fusion::fuse(&FusionWeights::v1(), black_box(&report.modules), Degradation::default()))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("detect/{label}"));
        group.sample_size(20);
        group.bench_function("jpeg", |b| b.iter(|| detector.detect(black_box(&jpeg)).unwrap()));
        group.finish();
    }
    let mut group = c.benchmark_group("decode/heic-8.5MP");
    group.sample_size(10);
    group.bench_function("heic", |b| b.iter(|| decode(black_box(&heic), &limits).unwrap()));
    group.bench_function("detect", |b| b.iter(|| detector.detect(black_box(&heic)).unwrap()));
    group.finish();
    let mut group = c.benchmark_group("decode/avif-1MP");
    group.sample_size(10);
    group.bench_function("avif", |b| b.iter(|| decode(black_box(&avif), &limits).unwrap()));
    group.bench_function("detect", |b| b.iter(|| detector.detect(black_box(&avif)).unwrap()));
    group.finish();
}

criterion_group!(detect_benches, benches);
criterion_main!(detect_benches);
