//! The report serialises to exactly the documented field names (DESIGN.md §2).

mod common;

use std::collections::BTreeMap;

use serde_json::Value;
use tellscan::forensics::report::*;
use tellscan::forensics::{Flag, ImageFormat, Verdict};

fn sample_report() -> Report {
    let module = |score, flags: Vec<Flag>| ModuleReport {
        score,
        abstained: false,
        flags,
        explanations: vec!["reason".into()],
        elapsed_ms: 1.5,
    };
    Report {
        score: 87.3,
        verdict: Verdict::AiGenerated,
        presentation: "AI generation detected with high confidence".into(),
        confidence: 0.97,
        uncertainty: 0.02,
        explanations: vec!["Metadata mentions Adobe Firefly".into()],
        hashes: Hashes { sha256: "171f4e74".into() },
        modules: BTreeMap::from([
            ("metadata".into(), module(0.78, vec![Flag::FireflySignature])),
            ("provenance".into(), ModuleReport::abstain("no C2PA manifest")),
            ("fusion".into(), module(0.873, vec![])),
        ]),
        generator: Some(GeneratorAttribution {
            family: "firefly".into(),
            confidence: 0.8,
            tool: Some("Adobe Firefly".into()),
            model: None,
        }),
        model: None,
        image: ImageInfo { format: ImageFormat::Jpeg, width: 1024, height: 768, bytes: 123_456 },
        cached: false,
        elapsed_ms: 12.5,
        details: vec![DetailSignal {
            signal_type: "metadata".into(),
            confidence: 78.0,
            description: "reason".into(),
        }],
        regions: vec![Region { x: 64, y: 128, width: 64, height: 64, score: 0.91, module: "visual".into() }],
        file_metadata: FileMetadata {
            creator: Some("Adobe Firefly".into()),
            width: 1024,
            height: 768,
            ..Default::default()
        },
    }
}

#[test]
fn report_matches_the_golden_json() {
    let actual = serde_json::to_value(sample_report()).unwrap();
    let golden: Value = serde_json::from_str(include_str!("golden/report.json")).unwrap();
    assert_eq!(actual, golden, "actual:\n{}", serde_json::to_string_pretty(&actual).unwrap());
}

#[test]
fn verdict_bands_are_the_documented_ones() {
    let cases = [
        (100.0, "AI generated"),
        (85.0, "AI generated"),
        (84.9, "Likely AI generated"),
        (60.0, "Likely AI generated"),
        (59.9, "Uncertain"),
        (40.0, "Uncertain"),
        (39.9, "Likely authentic"),
        (15.0, "Likely authentic"),
        (14.9, "Authentic"),
        (0.0, "Authentic"),
    ];
    for (score, label) in cases {
        let v = Verdict::from_score(score);
        assert_eq!(serde_json::to_value(v).unwrap(), Value::String(label.into()), "{score}");
    }
}

#[test]
fn a_real_detection_has_every_documented_field() {
    let bytes = common::read_shared("fixtures/c2pa/IMG_0003.jpg");
    let report = serde_json::to_value(common::detector().detect(&bytes).unwrap()).unwrap();
    let keys: Vec<&str> = report.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        "score",
        "verdict",
        "presentation",
        "confidence",
        "uncertainty",
        "explanations",
        "hashes",
        "modules",
        "generator",
        "image",
        "cached",
        "elapsed_ms",
        "details",
        "regions",
        "file_metadata",
    ];
    expected.sort();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    assert_eq!(keys_sorted, expected);
    for (name, m) in report["modules"].as_object().unwrap() {
        let mut mk: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        mk.sort();
        assert_eq!(mk, ["abstained", "elapsed_ms", "explanations", "flags", "score"], "{name}");
    }
    assert_eq!(report["hashes"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(report["image"]["format"], "jpeg");
}

#[test]
fn the_readme_documents_every_flag() {
    let readme = include_str!("../README.md");
    for flag in Flag::ALL {
        let name = serde_json::to_value(flag).unwrap();
        let name = name.as_str().unwrap();
        assert!(readme.contains(&format!("| `{name}` |")), "README does not document `{name}`");
    }
}
