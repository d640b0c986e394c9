//! The provenance module against every row of `shared/fixtures/c2pa/expected.csv`.
//!
//! The CSV was recorded with c2pa-rs 0.91.3 (through c2pa-python 0.38.1), offline, with no
//! trust list. The crate here is c2pa 0.90.22.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tellscan::forensics::provenance::{ManifestState, Provenance, ProvenanceConfig, ProvenanceFinding};
use tellscan::forensics::report::Flag;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/c2pa/");

/// One row of `expected.csv`.
#[derive(Debug, serde::Deserialize)]
struct Row {
    file: String,
    has_manifest: String,
    validation_state: String,
    digital_source_type: String,
    claim_generator: String,
    notes: String,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(FIXTURES)
}

fn rows() -> Vec<Row> {
    let path = fixtures_dir().join("expected.csv");
    let mut reader =
        csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    reader.deserialize().map(|r| r.expect("a well-formed expected.csv row")).collect()
}

fn mime_for(file: &str) -> &'static str {
    let ext = Path::new(file).extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "heic" | "heif" => "image/heif",
        "avif" => "image/avif",
        "svg" => "image/svg+xml",
        "tif" | "tiff" => "image/tiff",
        other => panic!("no mime type for extension {other:?} ({file})"),
    }
}

fn read_fixture(file: &str) -> Vec<u8> {
    let path = fixtures_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn inspect(p: &Provenance, file: &str) -> ProvenanceFinding {
    p.inspect(mime_for(file), &read_fixture(file))
}

fn state_name(state: &ManifestState) -> &'static str {
    match state {
        ManifestState::None => "none",
        ManifestState::Remote => "remote",
        ManifestState::Error(_) => "error",
        ManifestState::Valid => "valid",
        ManifestState::Invalid => "invalid",
    }
}

/// The failure codes listed after "status:" in the notes that make a manifest invalid
/// (the untrusted-signer and informational codes are left out).
fn serious_codes_in_notes(notes: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in notes.split(';') {
        let part = part.trim();
        let Some(codes) = part.strip_prefix("status:") else { continue };
        for code in codes.split_whitespace() {
            let benign = code == "signingCredential.untrusted"
                || code.starts_with("timeStamp.")
                || (code.starts_with("cawg.") && code.ends_with(".untrusted"));
            if !benign {
                out.push(code.to_string());
            }
        }
    }
    out
}

#[test]
fn every_expected_row_matches() {
    let provenance = Provenance::new(&ProvenanceConfig::default()).expect("provenance without anchors");
    let rows = rows();
    assert!(rows.len() >= 40, "expected.csv has only {} rows", rows.len());

    let mut mismatches: Vec<String> = Vec::new();
    let mut timings: Vec<(String, f64)> = Vec::new();
    for row in &rows {
        let bytes = read_fixture(&row.file);
        let started = Instant::now();
        let finding = provenance.inspect(mime_for(&row.file), &bytes);
        timings.push((row.file.clone(), started.elapsed().as_secs_f64() * 1000.0));
        let mut fail =
            |what: String| mismatches.push(format!("{}: {what}\n    finding: {finding:?}", row.file));

        // validation_state is the authority; has_manifest = remote overrides it.
        let expected_state = match (row.has_manifest.as_str(), row.validation_state.as_str()) {
            ("remote", _) => "remote",
            (_, "none") => "none",
            (_, "valid") => "valid",
            (_, "invalid") => "invalid",
            (_, "error") => "error",
            (h, v) => panic!("{}: unknown has_manifest/validation_state {h}/{v}", row.file),
        };
        let actual_state = state_name(&finding.state);
        if actual_state != expected_state {
            fail(format!("state {actual_state}, expected {expected_state}"));
        }

        // has_manifest true/false/remote against the state.
        let has_manifest_ok = match row.has_manifest.as_str() {
            "true" => matches!(
                finding.state,
                ManifestState::Valid | ManifestState::Invalid | ManifestState::Error(_)
            ),
            // tiff_poc.tiff: false with validation_state=error (the parser guard fires first).
            "false" if row.validation_state == "error" => matches!(finding.state, ManifestState::Error(_)),
            "false" => finding.state == ManifestState::None,
            "remote" => finding.state == ManifestState::Remote,
            other => panic!("{}: unknown has_manifest {other}", row.file),
        };
        if !has_manifest_ok {
            fail(format!("has_manifest={} but state is {actual_state}", row.has_manifest));
        }

        if !row.digital_source_type.is_empty()
            && finding.digital_source_type.as_deref() != Some(row.digital_source_type.as_str())
        {
            fail(format!(
                "digital_source_type {:?}, expected {:?}",
                finding.digital_source_type, row.digital_source_type
            ));
        }
        if !row.claim_generator.is_empty()
            && finding.claim_generator.as_deref() != Some(row.claim_generator.as_str())
        {
            fail(format!(
                "claim_generator {:?}, expected {:?}",
                finding.claim_generator, row.claim_generator
            ));
        }

        // Without trust anchors nobody is trusted.
        if finding.trusted {
            fail("trusted without any trust anchor".to_string());
        }

        // The serious codes the notes list must be reported.
        for code in serious_codes_in_notes(&row.notes) {
            if !finding.failure_codes.contains(&code) {
                fail(format!("failure code {code} not reported (got {:?})", finding.failure_codes));
            }
        }

        // Every state maps to a coherent report.
        let report = finding.to_module_report();
        let coherent = match &finding.state {
            ManifestState::None => report.abstained && report.flags.is_empty(),
            ManifestState::Remote => report.abstained && report.flags.contains(&Flag::C2paRemoteManifest),
            ManifestState::Error(_) => report.abstained && report.flags.contains(&Flag::C2paUnreadable),
            ManifestState::Valid => !report.abstained && report.flags.contains(&Flag::C2paValid),
            ManifestState::Invalid => {
                !report.abstained && report.flags.contains(&Flag::C2paInvalid) && report.score <= 0.6
            }
        };
        if !coherent || !(0.0..=1.0).contains(&report.score) || report.explanations.is_empty() {
            fail(format!("incoherent report {report:?}"));
        }
    }

    timings.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = timings.iter().map(|t| t.1).sum();
    eprintln!("inspect timings (ms), slowest first; total {total:.1} ms over {} files:", timings.len());
    for (file, ms) in timings.iter().take(8) {
        eprintln!("  {ms:8.2}  {file}");
    }

    assert!(mismatches.is_empty(), "{} mismatching row(s):\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn ai_signed_jpeg_is_decisive() {
    let provenance = Provenance::new(&ProvenanceConfig::default()).unwrap();
    let finding = inspect(&provenance, "signed/ai_A.jpg");
    assert_eq!(finding.state, ManifestState::Valid, "{finding:?}");
    assert_eq!(finding.all_source_types, vec!["trainedAlgorithmicMedia".to_string()]);
    assert_eq!(finding.manifest_count, 1);
    assert!(finding.signer.is_some(), "{finding:?}");
    let report = finding.to_module_report();
    assert!(report.score >= 0.9, "{report:?}");
    assert!(!report.abstained);
    assert!(report.flags.contains(&Flag::C2paValid), "{report:?}");
    assert!(report.flags.contains(&Flag::C2paAiSource), "{report:?}");
    assert!(report.flags.contains(&Flag::C2paPresent), "{report:?}");
    assert!(!report.flags.contains(&Flag::C2paTrusted), "{report:?}");
    assert!(report.explanations[0].contains("ai-detector-fixture/0.1"), "{report:?}");
}

#[test]
fn tampered_and_unsigned_files() {
    let provenance = Provenance::new(&ProvenanceConfig::default()).unwrap();

    let report = inspect(&provenance, "no_manifest.jpg").to_module_report();
    assert!(report.abstained, "{report:?}");
    assert_eq!(report.score, 0.5);

    let finding = inspect(&provenance, "signed/ai_A_tampered.jpg");
    let report = finding.to_module_report();
    assert!(!report.abstained && report.flags.contains(&Flag::C2paInvalid), "{report:?}");
    assert!(report.flags.contains(&Flag::C2paAiSource), "{report:?}");
    assert!((report.score - 0.6).abs() < 1e-9, "{report:?}");
    assert!(report.explanations[0].contains("assertion.dataHash.mismatch"), "{report:?}");

    let report = inspect(&provenance, "E-sig-CA.jpg").to_module_report();
    assert!((report.score - 0.5).abs() < 1e-9 && !report.abstained, "{report:?}");

    let report = inspect(&provenance, "cloud.jpg").to_module_report();
    assert!(report.abstained && report.flags.contains(&Flag::C2paRemoteManifest), "{report:?}");
    assert_eq!(
        report.explanations[0],
        "only a remote manifest is referenced; remote fetching is off, so it was not checked"
    );

    let report = inspect(&provenance, "C_with_CAWG_data.jpg").to_module_report();
    assert!(report.flags.contains(&Flag::C2paCaptureSource), "{report:?}");
    assert!((report.score - 0.25).abs() < 1e-9, "{report:?}");

    let report = inspect(&provenance, "CA.jpg").to_module_report();
    assert!((report.score - 0.45).abs() < 1e-9, "{report:?}");
}

#[test]
fn missing_or_bogus_trust_anchors_fail_clearly() {
    let missing = ProvenanceConfig { trust_anchors_pem: Some("/nonexistent/tellscan/anchors.pem".into()) };
    let err = Provenance::new(&missing).expect_err("a missing PEM file must fail");
    let text = format!("{err:#}");
    assert!(text.contains("/nonexistent/tellscan/anchors.pem") && text.contains("trust anchors"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "this is not a certificate\n").unwrap();
    let err = Provenance::new(&ProvenanceConfig { trust_anchors_pem: Some(bogus.clone()) })
        .expect_err("a PEM file without certificates must fail");
    assert!(format!("{err:#}").contains(&bogus.display().to_string()), "{err:#}");
}

/// The PEM blocks of a signer's certificate chain, as the reader reports it.
fn pem_blocks(chain: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in chain.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            current.clear();
        }
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END CERTIFICATE-----") {
            blocks.push(current.clone());
        }
    }
    blocks
}

/// No C2PA test root ships inside the c2pa crate package, so the anchor is taken from the
/// signed fixture itself: the top certificate of the chain embedded in ai_A.jpg's signature
/// (the test CA that issued the signing certificate).
#[test]
fn configured_anchor_makes_the_signer_trusted() {
    let context = c2pa::Context::new()
        .with_settings(
            c2pa::Settings::new()
                .with_value("verify.remote_manifest_fetch", false)
                .and_then(|s| s.with_value("verify.ocsp_fetch", false))
                .unwrap(),
        )
        .unwrap();
    let bytes = read_fixture("signed/ai_A.jpg");
    let reader =
        c2pa::Reader::from_context(context).with_stream("image/jpeg", std::io::Cursor::new(&bytes)).unwrap();
    let chain = reader.active_manifest().unwrap().signature_info().unwrap().cert_chain().to_string();
    let blocks = pem_blocks(&chain);
    assert!(
        blocks.len() >= 2,
        "expected a signing certificate and its CA in the chain, got {}",
        blocks.len()
    );
    let anchor = blocks.last().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("anchors.pem");
    std::fs::write(&pem, anchor).unwrap();
    let provenance = Provenance::new(&ProvenanceConfig { trust_anchors_pem: Some(pem) }).unwrap();
    assert!(provenance.trust_enabled());

    let finding = inspect(&provenance, "signed/ai_A.jpg");
    assert_eq!(finding.state, ManifestState::Valid, "{finding:?}");
    assert!(finding.trusted, "{finding:?}");
    assert!(!finding.failure_codes.iter().any(|c| c == "signingCredential.untrusted"), "{finding:?}");
    let report = finding.to_module_report();
    assert!(report.flags.contains(&Flag::C2paTrusted) && report.score >= 0.97, "{report:?}");

    // Tampering still wins over trust: the signature is trusted, the manifest is invalid
    // and the report does not call it trusted.
    let finding = inspect(&provenance, "signed/ai_A_tampered.jpg");
    assert_eq!(finding.state, ManifestState::Invalid, "{finding:?}");
    assert!(finding.trusted, "{finding:?}");
    let report = finding.to_module_report();
    assert!(!report.flags.contains(&Flag::C2paTrusted) && report.flags.contains(&Flag::C2paInvalid));

    // The other signed formats chain to the same test CA.
    for file in [
        "signed/ai_sample1.png",
        "signed/ai_sample1.webp",
        "signed/ai_sample1.heic",
        "signed/ai_sample1.avif",
    ] {
        let finding = inspect(&provenance, file);
        assert!(finding.state == ManifestState::Valid && finding.trusted, "{file}: {finding:?}");
    }

    // A signer from another chain stays untrusted but valid.
    let finding = inspect(&provenance, "ocsp.jpg");
    assert_eq!(finding.state, ManifestState::Valid, "{finding:?}");
    assert!(!finding.trusted, "{finding:?}");
    assert!(finding.failure_codes.iter().any(|c| c == "signingCredential.untrusted"), "{finding:?}");

    // No file is trusted without anchors.
    let untrusted = Provenance::new(&ProvenanceConfig::default()).unwrap();
    assert!(!untrusted.trust_enabled());
    assert!(!inspect(&untrusted, "signed/ai_A.jpg").trusted);
}

#[test]
fn shared_across_threads() {
    let provenance = std::sync::Arc::new(Provenance::new(&ProvenanceConfig::default()).unwrap());
    let handles: Vec<_> = ["signed/ai_A.jpg", "XCA.jpg", "no_manifest.jpg", "cloud.jpg"]
        .into_iter()
        .map(|file| {
            let p = provenance.clone();
            std::thread::spawn(move || state_name(&inspect(&p, file).state))
        })
        .collect();
    let states: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(states, vec!["valid", "invalid", "none", "remote"]);
}
