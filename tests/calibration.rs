//! Calibrated fusion: the logistic fit on synthetic samples, the held-out calibration on the
//! shared corpus (`tellscan calibrate`), and loading the weights file.

mod common;

// `src/cli/calibrate.rs` names the library as `crate::…`; these imports let it compile here.
use tellscan::{eval, forensics, learn};

#[path = "../src/cli/calibrate.rs"]
#[allow(dead_code)]
mod calibrate;

use std::collections::BTreeMap;

use forensics::evidence::{logit, sigmoid};
use forensics::fusion::{fuse, Degradation, FusionWeights};
use forensics::report::ModuleReport;
use forensics::DetectorConfig;
use learn::calibration::{self, Sample, BAND_TARGETS, L2_GRID};

/// The detector calibration runs: the rule-based modules only (no `ml` weights: the network
/// has seen the corpus, so its scores here would be in-sample); calibration ignores any fusion.
fn detector_config() -> DetectorConfig {
    DetectorConfig { ml_weights: None, fusion: None, ..DetectorConfig::default() }
}

/// A deterministic pseudo-random stream (xorshift), 0-1.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn module(score: f64, abstained: bool, flags: &[forensics::Flag]) -> ModuleReport {
    ModuleReport {
        score,
        abstained,
        flags: flags.to_vec(),
        explanations: vec!["why".into()],
        elapsed_ms: 0.0,
    }
}

/// Synthetic corpus, four mixed sources. The truth: log-odds = −0.3 + `t`, where
/// - `frequency` always votes and is overconfident: its logit is 3·t;
/// - `metadata` votes on a third of the images with logit t + 2·(sign of the class) and abstains
///   on the rest;
/// - `visual` is noise.
fn synthetic() -> Vec<Sample> {
    let mut rng = Stream(0x9e37_79b9_7f4a_7c15);
    let mut samples = Vec::new();
    for i in 0..2000 {
        let t = 6.0 * rng.next() - 3.0;
        let positive = rng.next() < sigmoid(-0.3 + t);
        let sign = if positive { 1.0 } else { -1.0 };
        let metadata = if rng.next() < 1.0 / 3.0 { (sigmoid(t + 2.0 * sign), false) } else { (0.5, true) };
        let modules = BTreeMap::from([
            ("frequency".to_string(), (sigmoid(3.0 * t), false)),
            ("metadata".to_string(), metadata),
            ("visual".to_string(), (0.05 + 0.9 * rng.next(), false)),
        ]);
        samples.push(Sample {
            modules,
            positive,
            group: format!("source{}", i % 4),
            bound: None,
            condition: String::new(),
        });
    }
    samples
}

#[test]
fn synthetic_fit_recovers_structure_and_cross_validation_improves_calibration() {
    let samples = synthetic();
    let cal = calibration::calibrate(&samples, &L2_GRID, "synthetic", BAND_TARGETS).unwrap();
    let w = &cal.weights;
    // the overconfident module is shrunk towards 1/3, the noise one is ignored
    assert!(w.weights["frequency"] > 0.15 && w.weights["frequency"] < 0.6, "{w:?}");
    assert!(w.weights["visual"].abs() < 0.25, "{w:?}");
    assert!(w.weights["metadata"] > 0.3, "{w:?}");
    assert_eq!(w.default_weight, 0.0);
    assert!(w.abstain.contains_key("metadata") && w.abstain.contains_key("visual"));
    // four folds, out-of-fold probabilities for every sample
    assert_eq!(cal.cv.folds, 4);
    assert_eq!(cal.cv.calibrated.len(), samples.len());
    assert!(cal.cv.calibrated.iter().all(|p| (0.0..=1.0).contains(p)));
    let info = w.fitted.as_ref().unwrap();
    assert!(info.cv_ece_calibrated < info.cv_ece_uncalibrated, "{info:?}");
    assert!(info.cv_ece_calibrated < 0.05, "{info:?}");
    assert!(L2_GRID.contains(&info.l2));
    // fusion computes exactly the fitted probability from module reports
    let s = samples.iter().find(|s| !s.modules["metadata"].1).unwrap();
    let reports: BTreeMap<String, ModuleReport> = s
        .modules
        .iter()
        .map(|(name, &(score, abstained))| (name.clone(), module(score, abstained, &[])))
        .collect();
    let fused = fuse(w, &reports, Degradation { short_side: 1000, ..Default::default() });
    let want = w.bias + s.modules.iter().map(|(n, &(sc, _))| w.weights[n] * logit(sc)).sum::<f64>();
    let scale = w.scale.as_ref().expect("calibrate fits a score scale");
    assert!((s.probability(w) - sigmoid(want)).abs() < 1e-12);
    assert!((fused.report.score - scale.apply(sigmoid(want))).abs() < 1e-12);
    assert!((fused.report.score - s.score(w)).abs() < 1e-12);
    assert!(fused.report.explanations[0].contains("calibrated logistic fusion (3 modules)"));
}

#[test]
fn calibrated_fusion_answers_without_votes_and_keeps_decisive_rules() {
    let samples = synthetic();
    let w = calibration::fit(&samples, 1.0).unwrap();
    let none = BTreeMap::from([
        ("frequency".to_string(), ModuleReport::abstain("none")),
        ("metadata".to_string(), ModuleReport::abstain("none")),
    ]);
    let fused = fuse(&w, &none, Degradation::default());
    let want = sigmoid(w.bias + w.abstain["frequency"] + w.abstain["metadata"]);
    assert!((fused.report.score - want).abs() < 1e-12);
    assert!(!fused.report.abstained);
    assert!(fused.uncertainty >= 0.9 && fused.confidence == 0.0);
    // v1 still says 50 and abstains
    let v1 = fuse(&FusionWeights::v1(), &none, Degradation::default());
    assert_eq!(v1.score, 50.0);
    assert!(v1.report.abstained);
    // generator metadata still puts the score at ≥ 90 whatever the weights
    let meta = module(0.01, false, &[forensics::Flag::ComfyuiSignature]);
    let decisive = BTreeMap::from([("metadata".to_string(), meta)]);
    let fused = fuse(&w, &decisive, Degradation::default());
    assert!(fused.score >= 90.0, "{}", fused.score);
    assert!(fused.explanations[0].starts_with("Decisive:"));
}

/// The shared corpus, normalised (pixels only): calibrated fusion must be better calibrated
/// than v1 on sources the fit did not see.
#[test]
fn corpus_held_out_ece_is_lower_when_calibrated() {
    let labels = common::shared("corpus/labels.csv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("weights/fusion.json");
    let options =
        calibrate::CalibrateOptions { raw: false, web: None, normalized: true, ..Default::default() };
    let code = calibrate::run(&detector_config(), &[labels], &out, options).unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let weights = FusionWeights::load(&out).unwrap();
    let info = weights.fitted.clone().expect("the fit's facts are written");
    eprintln!("{info:#?}");
    assert!(info.folds >= 5, "{info:?}");
    assert!(info.positive > 50 && info.negative > 50, "{info:?}");
    assert!(
        info.cv_ece_calibrated < info.cv_ece_uncalibrated,
        "held-out ECE calibrated {} vs v1 {}",
        info.cv_ece_calibrated,
        info.cv_ece_uncalibrated
    );
    assert!(info.cv_auc_calibrated.unwrap() > 0.6, "{info:?}");
    // the file round-trips
    let again = dir.path().join("again.json");
    weights.save(&again).unwrap();
    assert_eq!(FusionWeights::load(&again).unwrap(), weights);
}

#[test]
fn load_explains_missing_truncated_and_non_finite_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope/fusion.json");
    let e = FusionWeights::load(&missing).unwrap_err().to_string();
    assert!(e.contains(&missing.display().to_string()) && e.contains("tellscan calibrate"), "{e}");

    let mut w = FusionWeights::v1();
    w.abstain.insert("metadata".into(), -0.5);
    let path = dir.path().join("fusion.json");
    w.save(&path).unwrap();
    assert_eq!(FusionWeights::load(&path).unwrap(), w);

    let text = std::fs::read_to_string(&path).unwrap();
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    let e = FusionWeights::load(&truncated).unwrap_err().to_string();
    assert!(e.contains("truncated.json") && e.contains("not a valid fusion weights JSON"), "{e}");

    let huge = dir.path().join("huge.json");
    std::fs::write(&huge, text.replace("-0.5", "1e999")).unwrap();
    let e = FusionWeights::load(&huge).unwrap_err().to_string();
    assert!(e.contains("huge.json"), "{e}");

    w.bias = f64::NAN;
    let e = w.save(&dir.path().join("nan.json")).unwrap_err().to_string();
    assert!(e.contains("bias"), "{e}");

    // a v1-shaped file without the new fields still loads (abstain empty: v1 behaviour)
    let old = dir.path().join("old.json");
    std::fs::write(&old, r#"{"bias": 0.0, "weights": {}, "default_weight": 1.0}"#).unwrap();
    let old = FusionWeights::load(&old).unwrap();
    assert!(!old.is_calibrated() && old.abstain.is_empty());
}

/// Both default conditions, the files as they are and through web chains, as `tellscan
/// calibrate` runs: the score scale holds the bands' targets (with their margin) on the
/// held-out probabilities it was fitted on, in each condition, and the nested figures are
/// written. The corpus alone cannot promise the bars on *unseen* sources (its two real
/// sources are camera originals, so holding one out leaves no web-like real photo to fit
/// on); the shipped weights are fitted on both corpora and `tests/web_eval.rs` checks them.
#[test]
fn corpus_raw_and_web_score_scale_holds_the_band_targets_where_fitted() {
    let labels = common::shared("corpus/labels.csv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fusion.json");
    let samples_csv = dir.path().join("held_out.csv");
    let options =
        calibrate::CalibrateOptions { held_out_scores: Some(samples_csv.clone()), ..Default::default() };
    calibrate::run(&detector_config(), &[labels], &out, options).unwrap();
    let weights = FusionWeights::load(&out).unwrap();
    let info = weights.fitted.clone().unwrap();
    assert!(info.cv_ece_calibrated < info.cv_ece_uncalibrated, "{info:#?}");
    let scale = weights.scale.clone().expect("calibrate fits a score scale");
    for condition in ["raw", "web"] {
        assert!((0.0..=1.0).contains(&scale.held_out_fpr_60[condition]), "{scale:?}");
        assert!((0.0..=1.0).contains(&scale.held_out_fpr_85[condition]), "{scale:?}");
    }
    let (p60, p85) = (scale.probability_at(0.6), scale.probability_at(0.85));
    assert!(p60 >= 0.6 && p85 > p60, "{scale:?}");
    let text = std::fs::read_to_string(&samples_csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[..6], ["path", "label", "source", "condition", "held_out_score", "loso_probability"]);
    let frequency = header.iter().position(|&h| h == "frequency").expect("a column per module");
    assert!(header.contains(&"visual") && header.contains(&"metadata"), "{header:?}");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), info.samples, "one row per sample");
    assert!(rows.iter().all(|r| r.len() == header.len()), "every row has every column");
    for condition in ["raw", "web"] {
        assert_eq!(rows.iter().filter(|r| r[3] == condition).count(), info.samples / 2);
    }
    assert!(rows.iter().all(|r| r[4].parse::<f64>().is_ok_and(|v| (0.0..=100.0).contains(&v))));
    let unit = |v: &str| v.parse::<f64>().is_ok_and(|v| (0.0..=1.0).contains(&v));
    assert!(rows.iter().all(|r| r[5].is_empty() || unit(r[5])));
    // a module's cell is its score when it voted, empty when it abstained
    assert!(rows.iter().all(|r| r[6..].iter().all(|v| v.is_empty() || unit(v))));
    let voted = rows.iter().filter(|r| !r[frequency].is_empty()).count();
    assert!(voted > rows.len() / 2 && voted < rows.len(), "frequency voted on {voted} of {}", rows.len());
}

#[test]
fn score_scale_sends_thresholds_to_band_edges_and_keeps_order() {
    let real: Vec<f64> = (0..200).map(|i| i as f64 / 200.0).collect();
    // at most 2 of 200 above: between the 2nd and 3rd largest
    let t = calibration::threshold_for_share(&real, 0.01);
    assert!(t > 0.985 && t < 0.99, "{t}");
    assert_eq!(calibration::threshold_for_share(&real, 0.0), 0.995 + 1e-6);
    let scale = forensics::fusion::ScoreScale::new(0.8, 0.95);
    assert!((scale.apply(0.8) - 0.6).abs() < 1e-12 && (scale.apply(0.95) - 0.85).abs() < 1e-12);
    assert_eq!(scale.apply(0.3), 0.3);
    assert_eq!(scale.apply(1.0), 1.0);
    assert!((scale.probability_at(0.6) - 0.8).abs() < 1e-12);
    let mut last = -1.0;
    for i in 0..=1000 {
        let v = scale.apply(i as f64 / 1000.0);
        assert!(v >= last, "monotone");
        last = v;
    }
    // thresholds below the bands' own values keep the identity there
    let lenient = forensics::fusion::ScoreScale::new(0.3, 0.5);
    assert!((lenient.apply(0.7) - 0.7).abs() < 1e-9 && (lenient.apply(0.9) - 0.9).abs() < 1e-9);
}

/// `tellscan train --held-out` writes each image's path as its own labels file does, and
/// training takes several labels files: out-of-fold scores must resolve against every labels
/// file's folder, not only the first's.
#[test]
fn out_of_fold_scores_resolve_against_every_labels_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut labels = Vec::new();
    for corpus in ["first", "second"] {
        let images = dir.path().join(corpus).join("files");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(images.join(format!("{corpus}.jpg")), b"not decoded here").unwrap();
        let file = dir.path().join(corpus).join("labels.csv");
        std::fs::write(&file, "path,label,source,generator\n").unwrap();
        labels.push(file);
    }
    let oof = dir.path().join("held_out.csv");
    std::fs::write(&oof, "path,score\nfiles/first.jpg,0.25\nfiles/second.jpg,0.75\n").unwrap();
    let scores = calibrate::read_oof(&oof, &labels).unwrap();
    let canonical = |corpus: &str| {
        std::fs::canonicalize(dir.path().join(corpus).join("files").join(format!("{corpus}.jpg"))).unwrap()
    };
    assert_eq!(scores.get(&canonical("first")), Some(&0.25), "{scores:?}");
    assert_eq!(scores.get(&canonical("second")), Some(&0.75), "{scores:?}");
    // a score outside 0-1 is refused, naming the row
    std::fs::write(&oof, "path,score\nfiles/first.jpg,1.5\n").unwrap();
    let err = calibrate::read_oof(&oof, &labels).unwrap_err().to_string();
    assert!(err.contains("row 2") && err.contains("1.5"), "{err}");
}
