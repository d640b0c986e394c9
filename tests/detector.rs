//! The whole detector on the shared fixtures: the report carries the generator and the
//! provenance verdict, and fusion applies its decisive rules.

mod common;

use tellscan::forensics::{DecodeError, Flag, ImageFormat, Verdict};

fn rows(csv: &str) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(common::shared(csv)).unwrap();
    reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect()
}

#[test]
fn every_generator_fixture_is_reported_as_ai_with_its_tool() {
    let detector = common::detector();
    let mut failures = Vec::new();
    for row in rows("fixtures/metadata/expected.csv") {
        let (file, tool) = (&row[0], &row[1]);
        match detector.detect(&common::read_shared(&format!("fixtures/metadata/{file}"))) {
            Ok(report) => {
                let found = report.generator.as_ref().and_then(|g| g.tool.clone());
                if found.as_deref() != Some(tool.as_str()) || report.score < 85.0 {
                    failures.push(format!("{file}: tool {found:?}, score {}", report.score));
                }
            }
            Err(e) => failures.push(format!("{file}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn files_without_generator_metadata_get_no_generator() {
    let detector = common::detector();
    for row in rows("fixtures/metadata/no_generator.csv") {
        match detector.detect(&common::read_shared(&format!("fixtures/metadata/{}", row[0]))) {
            Ok(report) => assert!(report.generator.is_none(), "{}", row[0]),
            Err(e) => assert_eq!(e, DecodeError::UnsupportedMedia, "{}", row[0]),
        }
    }
}

#[test]
fn c2pa_states_reach_the_report() {
    let detector = common::detector();
    let (mut checked, mut avif_checked) = (0, 0);
    for row in rows("fixtures/c2pa/expected.csv") {
        let (file, state, source) = (&row[0], &row[2], &row[3]);
        let Ok(report) = detector.detect(&common::read_shared(&format!("fixtures/c2pa/{file}"))) else {
            continue; // svg, tiff and the undecodable tampered PNG are outside the accepted set
        };
        checked += 1;
        avif_checked += usize::from(report.image.format == ImageFormat::Avif);
        let p = &report.modules["provenance"];
        let has = |f| p.flags.contains(&f);
        match state.as_str() {
            "valid" => assert!(has(Flag::C2paValid) && !p.abstained, "{file}: {p:?}"),
            "invalid" => assert!(has(Flag::C2paInvalid) && !has(Flag::C2paValid), "{file}: {p:?}"),
            "none" => assert!(p.abstained && p.flags.is_empty(), "{file}: {p:?}"),
            _ => assert!(p.abstained, "{file}: {p:?}"),
        }
        let declares_ai =
            matches!(source.as_str(), "trainedAlgorithmicMedia" | "compositeWithTrainedAlgorithmicMedia");
        if state == "valid" && declares_ai {
            assert!(report.score >= 85.0, "{file}: a valid AI manifest is decisive, got {}", report.score);
            assert_eq!(report.verdict, Verdict::AiGenerated);
        }
    }
    assert!(checked >= 35, "only {checked} fixtures decoded");
    assert_eq!(avif_checked, 3, "the unsigned, signed and tampered AVIF samples all decode");
}

#[test]
fn a_tampered_manifest_is_not_decisive() {
    let report =
        common::detector().detect(&common::read_shared("fixtures/c2pa/signed/ai_A_tampered.jpg")).unwrap();
    assert!(report.modules["provenance"].flags.contains(&Flag::C2paInvalid));
    assert!(report.score < 85.0, "a broken manifest's claim must not decide: {}", report.score);
}

#[test]
fn stripped_metadata_leaves_the_metadata_module_abstaining() {
    let resaved = common::read_shared("fixtures/c2pa/signed/ai_sample1_resaved.png");
    let report = common::detector().detect(&resaved).unwrap();
    assert!(report.modules["provenance"].abstained);
    assert!(report.generator.is_none());
}
