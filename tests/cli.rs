//! The command-line tool end to end: `detect` output and exit codes, `eval` figures.

mod common;

use std::process::Command;

use serde_json::Value;

fn tellscan() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tellscan"));
    cmd.env("RUST_LOG", "error");
    cmd
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn detect_reports_every_file_and_exits_zero_even_with_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.jpg");
    std::fs::write(&junk, b"definitely not an image").unwrap();
    let good = common::shared("fixtures/c2pa/IMG_0003.jpg");
    let missing = dir.path().join("missing.png");
    let out = tellscan().arg("detect").arg(&good).arg(&junk).arg(&missing).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["file"], good.display().to_string());
    assert!(lines[0]["report"]["score"].is_number());
    assert_eq!(lines[0]["report"]["image"]["format"], "jpeg");
    assert_eq!(lines[1]["error"], "unsupported_media");
    assert!(lines[1]["detail"].as_str().unwrap().contains("not JPEG, PNG, WebP, HEIC/HEIF or AVIF"));
    assert_eq!(lines[2]["error"], "unreadable_file");
}

#[test]
fn detect_names_the_generator_of_a_comfyui_render() {
    let file = common::shared("corpus/ai/comfyui/aura_flow/aura_flow_0.1_example.png");
    let out = tellscan().arg("detect").arg(&file).output().unwrap();
    let report = &json_lines(&out.stdout)[0]["report"];
    assert_eq!(report["verdict"], "AI generated");
    assert!(report["score"].as_f64().unwrap() >= 85.0);
    assert_eq!(report["generator"]["tool"], "ComfyUI");
    assert_eq!(report["generator"]["family"], "auraflow");
    assert!(report["modules"]["metadata"]["flags"]
        .as_array()
        .unwrap()
        .contains(&Value::from("comfyui_signature")));
}

#[test]
fn detect_table_has_a_header_and_one_row_per_file() {
    let files = ["fixtures/c2pa/IMG_0003.jpg", "fixtures/c2pa/P1000827.jpg"];
    let out =
        tellscan().args(["detect", "--format", "table"]).args(files.map(common::shared)).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("FILE"));
    assert!(lines[1].contains("IMG_0003.jpg") && lines[2].contains("P1000827.jpg"));
}

#[test]
fn detect_writes_a_heatmap_overlay_per_image() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::shared("fixtures/c2pa/IMG_0003.jpg");
    let out = tellscan().arg("detect").arg("--heatmap").arg(dir.path()).arg(&file).output().unwrap();
    let line = &json_lines(&out.stdout)[0];
    let path = line["heatmap"].as_str().expect("heatmap path in the output");
    let overlay = image::open(path).unwrap();
    let original = image::open(&file).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (original.width(), original.height()));
}

#[test]
fn eval_prints_the_documented_json_fields() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        ("corpus/ai/comfyui/aura_flow/aura_flow_0.1_example.png", "ai"),
        ("corpus/ai/comfyui/chroma/chroma_example.png", "ai"),
        ("fixtures/c2pa/IMG_0003.jpg", "real"),
        ("fixtures/c2pa/P1000827.jpg", "real"),
    ];
    let mut csv = String::from("path,label,generator,source,license\n");
    for (i, (rel, label)) in rows.iter().enumerate() {
        let name = format!("{i}.{}", rel.rsplit('.').next().unwrap());
        std::fs::copy(common::shared(rel), dir.path().join(&name)).unwrap();
        csv.push_str(&format!("{name},{label},x,test,test\n"));
    }
    let labels = dir.path().join("labels.csv");
    std::fs::write(&labels, csv).unwrap();
    let out = tellscan().arg("eval").arg(&labels).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "n",
        "auc",
        "ap",
        "accuracy",
        "fpr_real",
        "tpr_ai",
        "fpr_real_85",
        "uncertain",
        "ece",
        "mean_ms",
        "p95_ms",
        "modules",
    ] {
        assert!(v.get(field).is_some(), "missing {field} in {v}");
    }
    // the per-source figures only when asked for
    assert!(v.get("by_source").is_none() && v.get("source_auc").is_none(), "{v}");
    assert_eq!(v["n"], 4);
    // generator metadata against coherent camera EXIF: the raw files are separable
    assert_eq!(v["auc"], 1.0);
    assert_eq!(v["fpr_real"], 0.0);
    assert_eq!(v["fpr_real_85"], 0.0);
    assert_eq!(v["tpr_ai"], 1.0);
    assert!(v["modules"]["metadata"]["auc"].as_f64().unwrap() > 0.99);

    let out = tellscan().arg("eval").arg(&labels).args(["--json", "--normalize"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // normalisation strips the metadata: the metadata module must abstain on every image
    assert_eq!(v["modules"]["metadata"]["abstain_rate"], 1.0);
    assert_eq!(v["n"].as_u64().unwrap() + v["skipped"].as_u64().unwrap(), 4);
}

/// A labels file of seven rows in a fresh folder: two generated sources, two real ones, and a
/// file that does not decode.
fn mixed_labels(dir: &std::path::Path) -> std::path::PathBuf {
    let rows = [
        (
            "corpus/ai/comfyui/hypernetworks/hypernetwork_example_output.png",
            "ai",
            "comfyanonymous/ComfyUI_examples",
        ),
        ("corpus/ai/comfyui/sdturbo/sdxlturbo_example.png", "ai", "comfyanonymous/ComfyUI_examples"),
        (
            "corpus/ai/kolors/controlnet/outputs/Canny_dog.jpg",
            "ai",
            "Kwai-Kolors/Kolors@0123456789abcdef0123456789abcdef01234567",
        ),
        (
            "corpus/real/metadata-extractor/jpg/FujiFilm FinePix1400Zoom (2).jpg",
            "real",
            "drewnoakes/metadata-extractor-images",
        ),
        (
            "corpus/real/metadata-extractor/webp/HTC Desire.webp",
            "real",
            "drewnoakes/metadata-extractor-images",
        ),
        ("corpus/real/exif-samples/jpg/tests/11-tests.jpg", "real", "ianare/exif-samples"),
    ];
    let mut csv = String::from("path,label,generator,source,license\n");
    for (i, (rel, label, source)) in rows.iter().enumerate() {
        let name = format!("{i}.{}", rel.rsplit('.').next().unwrap());
        std::fs::copy(common::shared(rel), dir.join(&name)).unwrap();
        csv.push_str(&format!("{name},{label},x,{source},test\n"));
    }
    std::fs::write(dir.join("junk.jpg"), b"not an image").unwrap();
    csv.push_str("junk.jpg,real,camera,ianare/exif-samples,test\n");
    let labels = dir.join("labels.csv");
    std::fs::write(&labels, csv).unwrap();
    labels
}

#[test]
fn eval_on_web_chains_writes_per_source_figures_scores_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let labels = mixed_labels(dir.path());
    let (scores, plots) = (dir.path().join("scores.csv"), dir.path().join("plots"));
    let out = tellscan()
        .arg("eval")
        .arg(&labels)
        .args(["--web", "--seed", "3", "--by-source", "--json", "--scores"])
        .arg(&scores)
        .arg("--plot")
        .arg(&plots)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = v["n"].as_u64().unwrap();
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(n + v["skipped"].as_u64().unwrap(), 6);
    for field in ["fpr_real", "fpr_real_85", "uncertain", "tpr_ai"] {
        let share = v[field].as_f64().unwrap_or_else(|| panic!("{field} in {v}"));
        assert!((0.0..=1.0).contains(&share), "{field} = {share}");
    }

    // one row per source, the scored images adding up to n
    let rows = v["by_source"].as_array().expect("by_source");
    let sources: Vec<&str> = rows.iter().map(|r| r["source"].as_str().unwrap()).collect();
    assert_eq!(sources.len(), 4, "{sources:?}");
    assert_eq!(rows.iter().map(|r| r["n"].as_u64().unwrap()).sum::<u64>(), n);
    assert_eq!(rows.iter().map(|r| r["failed"].as_u64().unwrap()).sum::<u64>(), 1);
    for r in rows {
        for field in ["share_60", "share_85", "uncertain"] {
            let share = r[field].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&share), "{field} of {r}");
        }
        let mean = r["mean_score"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&mean), "{r}");
    }
    // one AUC per (generated source, real source) pair
    let pairs: std::collections::BTreeSet<(&str, &str)> = v["source_auc"]
        .as_array()
        .expect("source_auc")
        .iter()
        .map(|p| {
            assert!((0.0..=1.0).contains(&p["auc"].as_f64().unwrap()), "{p}");
            (p["ai_source"].as_str().unwrap(), p["real_source"].as_str().unwrap())
        })
        .collect();
    assert_eq!(v["source_auc"].as_array().unwrap().len(), 4);
    for ai in
        ["comfyanonymous/ComfyUI_examples", "Kwai-Kolors/Kolors@0123456789abcdef0123456789abcdef01234567"]
    {
        for real in ["drewnoakes/metadata-extractor-images", "ianare/exif-samples"] {
            assert!(pairs.contains(&(ai, real)), "{ai} vs {real} missing from {pairs:?}");
        }
    }

    // the scores file: the documented columns, one row per labels row, the failure kept
    let mut reader = csv::Reader::from_path(&scores).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header[..9],
        ["path", "label", "source", "generator", "status", "score", "verdict", "uncertainty", "chain"]
    );
    assert_eq!(header.last().unwrap(), "flags");
    assert!(
        header.iter().any(|h| h == "ml_score") && header.iter().any(|h| h == "metadata_abstained"),
        "{header:?}"
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 7);
    for r in &records {
        assert_eq!(r.len(), header.len());
        if &r[0] == "junk.jpg" {
            assert_eq!((&r[4], &r[5]), ("failed", ""));
        } else {
            assert_eq!(&r[4], "scored");
            assert!(!r[8].is_empty(), "every image went through a web chain: {r:?}");
        }
    }

    // three decodable PNGs of the documented sizes
    for (name, size) in [
        ("roc.png", tellscan::eval::plot::ROC_SIZE),
        ("histogram.png", tellscan::eval::plot::HISTOGRAM_SIZE),
        ("reliability.png", tellscan::eval::plot::RELIABILITY_SIZE),
    ] {
        let img = image::open(plots.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width(), img.height()), size, "{name}");
    }

    // the same figures as a table: a row per source, the commit cut off the name
    let out =
        tellscan().arg("eval").arg(&labels).args(["--web", "--seed", "3", "--by-source"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    println!("{text}");
    assert!(text.contains("at threshold 85: FPR(real)"), "{text}");
    let table: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("source ")).take(5).collect();
    assert_eq!(table.len(), 5, "{text}");
    assert!(table[1..].iter().any(|l| l.starts_with("Kwai-Kolors/Kolors ")), "{text}");
    assert!(!text.contains("0123456789abcdef"), "{text}");
    assert!(text.contains("R2 = ianare/exif-samples (real 1)"), "{text}");
}

#[test]
fn eval_rejects_a_bad_perturbation_with_a_clear_message() {
    let out = tellscan().args(["eval", "labels.csv", "--perturb", "blur:3"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown perturbation 'blur'"));
}

#[test]
fn train_rejects_a_source_balance_outside_zero_to_one() {
    let out = tellscan()
        .args(["train", "--labels", "labels.csv", "--out", "w.safetensors", "--source-balance", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1.5 is outside 0..=1"), "{out:?}");
}

#[test]
fn an_undecodable_file_with_a_manifest_still_reports_its_provenance() {
    let file = common::shared("fixtures/c2pa/signed/ai_sample1_tampered.png");
    let out = tellscan().arg("detect").arg(&file).output().unwrap();
    let line = &json_lines(&out.stdout)[0];
    assert_eq!(line["error"], "undecodable_image");
    let flags = line["provenance"]["flags"].as_array().expect("provenance in the error");
    assert!(flags.contains(&Value::from("c2pa_invalid")), "{line}");
}
