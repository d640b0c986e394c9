//! `tellscan train`: fit the `ml` module's network on one or more labels files and save its
//! weights, with a record of how (options, loss, grouped validation, a golden output) beside
//! them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::eval::read_labels;
use crate::forensics::ml::{patches, INFERENCE_PATCHES};
use crate::learn::aligned::Reconstructor;
use crate::learn::train::{
    attach_pairs, golden_input, group_folds, grouped_validation, load_examples, loss_ends, train, Example,
    TrainOptions, TrainRecord, VALIDATION_WEB_SEED,
};

/// What `tellscan train` was asked to do.
#[derive(Debug, Clone)]
pub struct TrainArgs {
    /// The labels files (their images are pooled; sources are the validation groups).
    pub labels: Vec<PathBuf>,
    /// Where to write the weights (`.safetensors`); the record goes beside it as `.json`.
    pub out: PathBuf,
    /// Training options.
    pub options: TrainOptions,
    /// Run the grouped validation first with this many folds (one training per fold).
    pub validate: Option<usize>,
    /// Write the held-out scores of the validation here (`path,score`), for `tellscan calibrate`.
    pub held_out: Option<PathBuf>,
    /// Write each fold's weights and held-out sources into this folder.
    pub fold_weights: Option<PathBuf>,
    /// Use only the first N rows of each labels file (for quick trials).
    pub limit: Option<usize>,
    /// The autoencoder folder for the aligned pairs.
    pub taesd: PathBuf,
    /// Where the reconstructions are cached.
    pub aligned_cache: PathBuf,
}

/// Run `tellscan train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut examples = Vec::new();
    let mut row_count = 0;
    for labels in &args.labels {
        let mut rows = read_labels(labels)?;
        if let Some(limit) = args.limit {
            rows.truncate(limit);
        }
        row_count += rows.len();
        examples.extend(load_examples(&rows, &labels.display().to_string()));
    }
    for skipped in &args.options.skip_generated_of {
        anyhow::ensure!(
            args.labels.iter().any(|l| l.display().to_string() == *skipped),
            "--no-generated-from {skipped} is not one of the --labels files"
        );
    }
    let positives = examples.iter().filter(|e| e.positive).count();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} images decoded ({} generated, {} real; {} skipped) in {:.1} s; seed {}",
        examples.len(),
        positives,
        examples.len() - positives,
        row_count - examples.len(),
        started.elapsed().as_secs_f64(),
        args.options.seed
    )?;
    if args.options.aligned {
        let reconstructor = Reconstructor::new(&args.taesd, &args.aligned_cache)?;
        let began = Instant::now();
        let report = attach_pairs(&mut examples, &reconstructor);
        writeln!(
            out,
            "aligned pairs: {} from the cache, {} computed in {:.1} s ({}); mean PSNR of the \
             reconstructions {:.2} dB",
            report.cached,
            report.computed,
            began.elapsed().as_secs_f64(),
            args.aligned_cache.display(),
            report.mean_psnr
        )?;
    }
    let validation = if let Some(folds) = args.validate {
        let folds = group_folds(&examples, folds);
        let v = grouped_validation(&examples, &args.options, &folds, args.fold_weights.as_deref())?;
        write_validation(&mut out, &v, &examples)?;
        writeln!(out, "validation done at {:.0} s", started.elapsed().as_secs_f64())?;
        if let Some(dir) = &args.fold_weights {
            writeln!(out, "fold weights and held-out sources written to {}", dir.display())?;
        }
        if let Some(path) = &args.held_out {
            let mut csv = String::from("path,score\n");
            for h in &v.held_out {
                csv.push_str(&format!("{},{:.6}\n", h.path, h.score));
            }
            std::fs::write(path, csv).with_context(|| format!("cannot write {}", path.display()))?;
            writeln!(out, "held-out scores written to {}", path.display())?;
        }
        Some(v)
    } else {
        None
    };
    let all: Vec<&Example> = examples.iter().collect();
    let trained = train(&all, &args.options)?;
    let (loss_start, loss_end) = loss_ends(&trained.losses, 20);
    let golden = golden_input();
    let golden_logits = trained.model().logits(&golden, &patches::select(&golden, INFERENCE_PATCHES))?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    trained.varmap.save(&args.out).with_context(|| format!("cannot write {}", args.out.display()))?;
    let record = TrainRecord {
        labels: args.labels.iter().map(|p| p.display().to_string()).collect(),
        options: args.options.clone(),
        examples: (positives, examples.len() - positives),
        steps: trained.losses.len(),
        loss_start,
        loss_end,
        golden_logits,
        validation,
    };
    let record_path = args.out.with_extension("json");
    std::fs::write(&record_path, serde_json::to_string_pretty(&record)? + "\n")
        .with_context(|| format!("cannot write {}", record_path.display()))?;
    writeln!(
        out,
        "trained {} steps: loss {loss_start:.4} → {loss_end:.4} ({:.0} s in all); weights {}, record {}",
        record.steps,
        started.elapsed().as_secs_f64(),
        args.out.display(),
        record_path.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn write_validation(
    out: &mut impl Write,
    v: &crate::learn::train::Validation,
    examples: &[Example],
) -> std::io::Result<()> {
    let show = |auc: Option<f64>| auc.map_or("n/a".to_string(), |a| format!("{a:.3}"));
    writeln!(
        out,
        "grouped validation, whole sources held out (held-out images after the web chain of \
         `eval --web --seed {VALIDATION_WEB_SEED}`; in brackets: normalised, 512 crop, JPEG q90)"
    )?;
    for (k, (fold, auc)) in v.folds.iter().zip(&v.fold_auc).enumerate() {
        let normalised = v.fold_auc_normalised.get(k).copied().flatten();
        writeln!(out, "  fold {} AUC {} ({}): {}", k + 1, show(*auc), show(normalised), fold.join(", "))?;
        for group in fold {
            let held: Vec<_> = v.held_out.iter().filter(|h| &h.group == group).collect();
            let mean = held.iter().map(|h| h.score).sum::<f64>() / held.len().max(1) as f64;
            let normalised: Vec<f64> = held.iter().filter_map(|h| h.normalised_score).collect();
            let mean_normalised = normalised.iter().sum::<f64>() / normalised.len().max(1) as f64;
            let flagged = held.iter().filter(|h| h.score >= 0.5).count();
            let of = |positive: bool| examples.iter().any(|e| &e.group == group && e.positive == positive);
            let class = match (of(true), of(false)) {
                (true, true) => "both",
                (true, false) => "ai",
                _ => "real",
            };
            writeln!(
                out,
                "    {group:<40} {class:<4} n={:<3} mean score {mean:.3} ({mean_normalised:.3})  ≥0.5: {flagged}",
                held.len()
            )?;
        }
    }
    writeln!(
        out,
        "  pooled AUC {} ({})  TPR(ai) {:.3}  FPR(real) {:.3} at 0.5",
        show(v.auc),
        show(v.auc_normalised),
        v.true_positive_rate,
        v.false_positive_rate
    )
}
