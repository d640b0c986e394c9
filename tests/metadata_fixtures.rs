//! Generator-signature recognition against the shared fixtures and corpus:
//!
//! - every file of `fixtures/metadata/expected.csv` names its tool (and model, when the table
//!   gives one);
//! - the files of `no_generator.csv` name none (the empty file is a decode error, no panic);
//! - the model family inferred from the ComfyUI graphs of `corpus/ai/comfyui/` agrees with
//!   the `generator` column of `corpus/labels.csv`;
//! - no real camera photo of the corpus is attributed to a generator.

use std::path::{Path, PathBuf};

use image::GrayImage;
use tellscan::forensics::decode::{decode, read_blocks, DecodeLimits, ImageFormat, MetadataBlocks};
use tellscan::forensics::metadata::generators::{find_generator, GeneratorFinding};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/metadata/");

fn fixture(rel: &str) -> PathBuf {
    Path::new(FIXTURES).join(rel)
}

fn corpus(rel: &str) -> PathBuf {
    Path::new(SHARED).join("corpus").join(rel)
}

fn rows(path: &Path) -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    reader.records().map(|r| r.expect("csv row")).collect()
}

fn header_index(path: &Path, name: &str) -> usize {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader.headers().unwrap().iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"))
}

/// Blocks and alpha of a file: decode it; if the pixels do not decode, read the blocks alone.
fn blocks_and_alpha(bytes: &[u8]) -> Option<(MetadataBlocks, Option<GrayImage>)> {
    match decode(bytes, &DecodeLimits::default()) {
        Ok(img) => Some((img.blocks, img.alpha)),
        Err(_) => ImageFormat::sniff(bytes).map(|f| (read_blocks(f, bytes), None)),
    }
}

/// Run the generator search the way the metadata module does.
fn generator_of(bytes: &[u8]) -> Option<GeneratorFinding> {
    let (blocks, alpha) = blocks_and_alpha(bytes)?;
    let exif = blocks.exif.as_ref().and_then(|raw| exif::Reader::new().read_raw(raw.clone()).ok());
    find_generator(&blocks, exif.as_ref(), alpha.as_ref())
}

/// Blocks only (no pixel decoding), for the corpus scan.
fn generator_of_blocks(bytes: &[u8]) -> Option<GeneratorFinding> {
    let blocks = read_blocks(ImageFormat::sniff(bytes)?, bytes);
    let exif = blocks.exif.as_ref().and_then(|raw| exif::Reader::new().read_raw(raw.clone()).ok());
    find_generator(&blocks, exif.as_ref(), None)
}

/// A model name for comparison: folder prefix and weight-file extension removed, lower-cased.
fn norm_model(name: &str) -> String {
    let s = name.trim();
    let s = s.rsplit(['/', '\\']).next().unwrap_or(s);
    let lower = s.to_lowercase();
    for ext in [".safetensors", ".ckpt", ".pt", ".pth", ".gguf", ".bin", ".sft"] {
        if let Some(stem) = lower.strip_suffix(ext) {
            return stem.trim().to_string();
        }
    }
    lower.trim().to_string()
}

#[test]
fn expected_generators_are_recognised() {
    let table = fixture("expected.csv");
    let (file_i, tool_i, model_i) = (
        header_index(&table, "file"),
        header_index(&table, "generator_tool"),
        header_index(&table, "generator_model"),
    );
    let rows = rows(&table);
    assert_eq!(rows.len(), 17, "expected.csv should list 17 files");
    let mut mismatches = Vec::new();
    for row in &rows {
        let (file, tool, model) = (&row[file_i], &row[tool_i], &row[model_i]);
        let bytes = std::fs::read(fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let Some(found) = generator_of(&bytes) else {
            mismatches.push(format!("{file}: expected {tool}, found no generator"));
            continue;
        };
        println!(
            "{file}: {} {:?} family {:?} flag {:?}\n    {}",
            found.tool, found.models, found.family, found.flag, found.evidence
        );
        if found.tool != tool {
            mismatches.push(format!("{file}: expected tool {tool}, found {}", found.tool));
        }
        if found.evidence.trim().is_empty() {
            mismatches.push(format!("{file}: empty evidence"));
        }
        if model.is_empty() {
            continue;
        }
        let (names, family) = match model.split_once(" (") {
            Some((names, rest)) => (names, rest.split([' ', ')']).next()),
            None => (model, None),
        };
        let found_models: Vec<String> = found.models.iter().map(|m| norm_model(m)).collect();
        for want in names.split(" + ") {
            if !found_models.contains(&norm_model(want)) {
                mismatches.push(format!("{file}: model {want:?} not among {:?}", found.models));
            }
        }
        if found.model.as_deref().map(norm_model) != found_models.first().cloned() {
            mismatches.push(format!("{file}: model {:?} is not models[0]", found.model));
        }
        // the table's parenthesis names the family: check that too
        if let Some(family) = family.filter(|f| !f.is_empty()) {
            if found.family.as_deref() != Some(family) {
                mismatches.push(format!("{file}: family {:?}, table says {family}", found.family));
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn files_without_generator_metadata_name_none() {
    let table = fixture("no_generator.csv");
    let file_i = header_index(&table, "file");
    let rows = rows(&table);
    assert_eq!(rows.len(), 3);
    let mut mismatches = Vec::new();
    for row in &rows {
        let file = &row[file_i];
        let bytes = std::fs::read(fixture(file)).unwrap();
        if bytes.is_empty() {
            assert!(
                decode(&bytes, &DecodeLimits::default()).is_err(),
                "{file}: an empty file must not decode"
            );
        }
        if let Some(found) = generator_of(&bytes) {
            mismatches.push(format!("{file}: found {} ({})", found.tool, found.evidence));
        }
        // blocks alone, too
        if let Some(format) = ImageFormat::sniff(&bytes) {
            let blocks = read_blocks(format, &bytes);
            if let Some(found) = find_generator(&blocks, None, None) {
                mismatches.push(format!("{file} (blocks only): found {}", found.tool));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn metadata_is_a_claim_the_yosemite_outpaint_is_comfyui() {
    let bytes = std::fs::read(fixture("comfyui/inpaint/yosemite_outpaint_example.png")).unwrap();
    let found = generator_of(&bytes).expect("the outpaint workflow names ComfyUI");
    assert_eq!(found.tool, "ComfyUI");
    assert_eq!(found.flag, tellscan::forensics::report::Flag::ComfyuiSignature);
    assert_eq!(found.family.as_deref(), Some("sd2.x"));
    assert_eq!(found.model.as_deref().map(norm_model), Some("512-inpainting-ema".to_string()));
}

#[test]
fn comfyui_webp_exif_make_model_is_comfyui_not_a_camera() {
    for file in [
        "comfyui/mochi/mochi_simple_checkpoint.webp",
        "comfyui/wan/text_to_video_wan.webp",
        "comfyui/flux/flux_kontext_example_comic.webp",
    ] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        // without pixels and without a parsed EXIF, the raw block still tells
        let blocks = read_blocks(ImageFormat::sniff(&bytes).unwrap(), &bytes);
        let found = find_generator(&blocks, None, None).unwrap_or_else(|| panic!("{file}"));
        assert_eq!(found.tool, "ComfyUI", "{file}");
        assert!(found.evidence.contains("EXIF"), "{file}: {}", found.evidence);
    }
}

#[test]
fn comfyui_corpus_family_agrees_with_labels() {
    let labels = corpus("labels.csv");
    let (path_i, gen_i) = (header_index(&labels, "path"), header_index(&labels, "generator"));
    let rows: Vec<_> = rows(&labels).into_iter().filter(|r| r[path_i].starts_with("ai/comfyui/")).collect();
    assert!(rows.len() >= 50, "expected the ComfyUI part of the corpus, got {} rows", rows.len());
    let mut agree = 0;
    let mut disagreements = Vec::new();
    let mut not_comfy = Vec::new();
    for row in &rows {
        let (path, want) = (&row[path_i], &row[gen_i]);
        let bytes = std::fs::read(corpus(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let found = generator_of_blocks(&bytes);
        match &found {
            Some(f) if f.tool == "ComfyUI" => {}
            other => not_comfy.push(format!("{path}: {:?}", other.as_ref().map(|f| &f.tool))),
        }
        let family = found.as_ref().and_then(|f| f.family.clone());
        if family.as_deref() == Some(want) {
            agree += 1;
        } else {
            disagreements.push(format!(
                "{path}: labels {want}, found {family:?} from {:?}",
                found.as_ref().map(|f| &f.models)
            ));
        }
    }
    // the same with the API graph removed: the UI-graph ('workflow') reader alone
    let mut agree_workflow = 0;
    for row in &rows {
        let bytes = std::fs::read(corpus(&row[path_i])).unwrap();
        let mut blocks = read_blocks(ImageFormat::sniff(&bytes).unwrap(), &bytes);
        blocks.text_chunks.retain(|c| c.keyword != "prompt");
        let found = find_generator(&blocks, None, None);
        if found.as_ref().and_then(|f| f.family.as_deref()) == Some(&row[gen_i]) {
            agree_workflow += 1;
        } else {
            println!(
                "  workflow-only disagreement: {}: labels {}, found {:?}",
                &row[path_i],
                &row[gen_i],
                found.map(|f| (f.family, f.models))
            );
        }
    }
    println!("family agreement from 'workflow' alone: {agree_workflow}/{}", rows.len());
    assert!(agree_workflow as f64 >= 0.9 * rows.len() as f64);

    let rate = agree as f64 / rows.len() as f64;
    println!("family agreement on ai/comfyui: {agree}/{} = {:.1}%", rows.len(), rate * 100.0);
    for d in &disagreements {
        println!("  disagreement: {d}");
    }
    assert!(not_comfy.is_empty(), "not recognised as ComfyUI:\n{}", not_comfy.join("\n"));
    assert!(rate >= 0.9, "family agreement {:.1}% < 90%:\n{}", rate * 100.0, disagreements.join("\n"));
}

#[test]
fn real_camera_photos_name_no_generator() {
    let labels = corpus("labels.csv");
    let (path_i, label_i) = (header_index(&labels, "path"), header_index(&labels, "label"));
    let rows: Vec<_> = rows(&labels).into_iter().filter(|r| &r[label_i] == "real").collect();
    assert!(rows.len() >= 70, "expected the real photos of the corpus, got {}", rows.len());
    let mut false_findings = Vec::new();
    for row in &rows {
        let path = &row[path_i];
        let bytes = std::fs::read(corpus(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        if let Some(f) = generator_of(&bytes) {
            false_findings.push(format!("{path}: {} ({})", f.tool, f.evidence));
        }
        // and with a leniently parsed EXIF (find_generator parses it itself when given none)
        if let Some(format) = ImageFormat::sniff(&bytes) {
            if let Some(f) = find_generator(&read_blocks(format, &bytes), None, None) {
                false_findings.push(format!("{path} (blocks only): {} ({})", f.tool, f.evidence));
            }
        }
    }
    assert!(false_findings.is_empty(), "generator findings on real photos:\n{}", false_findings.join("\n"));
}

#[test]
fn mutated_fixtures_never_panic() {
    let table = fixture("expected.csv");
    let file_i = header_index(&table, "file");
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut runs = 0;
    for row in rows(&table) {
        let original = std::fs::read(fixture(&row[file_i])).unwrap();
        let Some(format) = ImageFormat::sniff(&original) else { continue };
        for round in 0..24 {
            let mut bytes = original.clone();
            if round % 3 == 0 {
                // truncate somewhere
                let keep = (next() as usize) % bytes.len().max(1);
                bytes.truncate(keep.max(16));
            } else {
                // flip a few bytes, biased towards the metadata near the start
                for _ in 0..(1 + next() % 8) {
                    let span = if round % 2 == 0 { bytes.len().min(4096) } else { bytes.len() };
                    let i = (next() as usize) % span.max(1);
                    if let Some(b) = bytes.get_mut(i) {
                        *b ^= 1 << (next() % 8);
                    }
                }
            }
            let blocks = read_blocks(format, &bytes);
            let exif = blocks.exif.as_ref().and_then(|raw| exif::Reader::new().read_raw(raw.clone()).ok());
            let _ = find_generator(&blocks, exif.as_ref(), None);
            let _ = find_generator(&blocks, None, None);
            runs += 1;
        }
    }
    assert!(runs > 300, "{runs}");
}
