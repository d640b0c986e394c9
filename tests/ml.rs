//! The `ml` module: the shipped weights load and reproduce the training run's recorded output;
//! broken or foreign weight files are clear errors (library, CLI); training runs end to end on
//! a tiny subset and its loss decreases.
mod common;

use std::path::{Path, PathBuf};

use tellscan::eval::read_labels;
use tellscan::forensics::ml::{patches, MlModel, WeightsError, DEFAULT_WEIGHTS, INFERENCE_PATCHES};
use tellscan::forensics::{Detector, DetectorConfig};
use tellscan::learn::train::{golden_input, load_examples, train, Example, TrainOptions, TrainRecord};

fn shipped() -> Vec<u8> {
    std::fs::read(DEFAULT_WEIGHTS).expect("the shipped weights are in weights/")
}

#[test]
fn shipped_weights_reproduce_the_recorded_golden_output() {
    let record: TrainRecord = serde_json::from_str(
        &std::fs::read_to_string(Path::new(DEFAULT_WEIGHTS).with_extension("json")).expect("training record"),
    )
    .expect("the record parses");
    let model = MlModel::load(Path::new(DEFAULT_WEIGHTS)).expect("the shipped weights load");
    let golden = golden_input();
    let logits = model.logits(&golden, &patches::select(&golden, INFERENCE_PATCHES)).expect("inference runs");
    assert_eq!(logits.len(), record.golden_logits.len());
    for (got, want) in logits.iter().zip(&record.golden_logits) {
        assert!((got - want).abs() < 1e-4, "logit {got} differs from the recorded {want}");
    }
    assert!(logits.iter().any(|&l| (l - logits[0]).abs() > 1e-6), "the patches get different logits");
}

#[test]
fn broken_weights_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.safetensors");
    let err = MlModel::load(&missing).unwrap_err();
    assert!(matches!(err, WeightsError::Missing(_)), "{err}");
    assert!(
        err.to_string().contains("nothing.safetensors") && err.to_string().contains("tellscan train"),
        "{err}"
    );

    let bytes = shipped();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = MlModel::load(&truncated).unwrap_err();
    assert!(matches!(err, WeightsError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("truncated.safetensors"), "{err}");

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file at all").unwrap();
    assert!(matches!(MlModel::load(&garbage).unwrap_err(), WeightsError::Corrupt { .. }));

    // a valid safetensors file of another shape
    let foreign = dir.path().join("foreign.safetensors");
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu).unwrap();
    tensors.insert(
        "conv0.weight".to_string(),
        candle_core::Tensor::zeros((8, 3, 3, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &foreign).unwrap();
    let err = MlModel::load(&foreign).unwrap_err();
    assert!(matches!(err, WeightsError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("conv0.weight"), "{err}");

    // a missing tensor, and an extra one
    let mut partial = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu).unwrap();
    partial.remove("head.bias");
    candle_core::safetensors::save(&partial, &foreign).unwrap();
    assert!(MlModel::load(&foreign).unwrap_err().to_string().contains("head.bias is missing"));
    let mut extra = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu).unwrap();
    extra.insert(
        "conv9.weight".into(),
        candle_core::Tensor::zeros(3, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&extra, &foreign).unwrap();
    assert!(MlModel::load(&foreign).unwrap_err().to_string().contains("unexpected tensor conv9.weight"));

    // the detector refuses to start without its weights
    let config = DetectorConfig {
        ml_weights: Some(tellscan::forensics::weights::WeightsSource::File(missing.clone())),
        ..DetectorConfig::default()
    };
    let err = Detector::new(&config).err().expect("no detector without weights");
    assert!(format!("{err:#}").contains("nothing.safetensors"), "{err:#}");
}

#[test]
fn the_cli_names_a_missing_weights_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tellscan"))
        .env_remove("TELLSCAN_DETECTOR__WEIGHTS")
        .args(["detect", "--weights", "/nonexistent/detector.safetensors", "Cargo.toml"])
        .output()
        .expect("tellscan runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/detector.safetensors") && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[test]
fn the_detector_reports_the_ml_module() {
    let detector = common::detector();
    assert!(detector.has_ml());
    let report =
        detector.detect(&common::encode(&common::picture(300, 200), image::ImageFormat::Jpeg)).unwrap();
    let ml = &report.modules["ml"];
    assert!(!ml.abstained, "{ml:?}");
    assert!((0.0..=1.0).contains(&ml.score));
    assert!(ml.explanations[0].contains("residual patches at half resolution"), "{:?}", ml.explanations);
    // its score is the halved picture's: the same patches scored by hand give the same number
    let model = MlModel::load(Path::new(DEFAULT_WEIGHTS)).unwrap();
    let pixels = common::picture(300, 200);
    let half = patches::network_view(&pixels);
    assert_eq!(half.dimensions(), (150, 100));
    let logits = model.logits(&half, &patches::select(&half, INFERENCE_PATCHES)).unwrap();
    let by_hand =
        1.0 / (1.0 + (-logits.iter().map(|&l| f64::from(l)).sum::<f64>() / logits.len() as f64).exp());
    assert!((model.score(&pixels).unwrap() - by_hand).abs() < 1e-9);
    // too small to halve (halves under one patch): read at native resolution
    let small = detector.detect(&common::encode(&common::picture(120, 90), image::ImageFormat::Png)).unwrap();
    assert!(
        small.modules["ml"].explanations[0].contains("at native resolution"),
        "{:?}",
        small.modules["ml"]
    );
    // smaller than a patch: the module abstains, the report still comes
    let tiny = detector.detect(&common::encode(&common::picture(40, 40), image::ImageFormat::Png)).unwrap();
    assert!(tiny.modules["ml"].abstained);
}

fn corpus() -> PathBuf {
    PathBuf::from("../shared/corpus/labels.csv")
}

#[test]
fn training_runs_end_to_end_on_a_tiny_subset_and_the_loss_decreases() {
    let rows = read_labels(&corpus()).expect("corpus labels");
    // three generated and three real images, the smallest files (quick to decode)
    let pick = |ai: bool| {
        let mut of_class: Vec<_> = rows.iter().filter(|r| r.label.is_ai() == ai).cloned().collect();
        of_class.sort_by_key(|r| std::fs::metadata(&r.path).map(|m| m.len()).unwrap_or(u64::MAX));
        of_class.truncate(3);
        of_class
    };
    let mut subset = pick(true);
    subset.extend(pick(false));
    let examples = load_examples(&subset, "labels.csv");
    assert_eq!(examples.len(), 6);
    let refs: Vec<&Example> = examples.iter().collect();
    // the images alone (aligned pairs need the autoencoder, tested in tests/aligned.rs)
    let options = common::quick_training(60);
    let first = train(&refs, &options).expect("training runs");
    common::assert_the_loss_decreases(&first.losses, 60);
    // the same seed gives the same run
    let again = train(&refs, &options).expect("training runs");
    assert_eq!(first.losses, again.losses);
    // with one real photo moved to a source of its own, evening out the sources changes the
    // loss's weights, and still learns
    let mut regrouped = examples.clone();
    regrouped[5].group = "a source of its own".to_string();
    let refs: Vec<&Example> = regrouped.iter().collect();
    let balanced = train(&refs, &TrainOptions { source_balance: 1.0, ..options }).expect("training runs");
    common::assert_the_loss_decreases(&balanced.losses, 60);
    assert_ne!(balanced.losses, first.losses);
}
