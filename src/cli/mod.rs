//! The command-line tool: argument parsing and the `detect`, `eval`, `train`, `calibrate`,
//! `serve`, `keys` and `openapi` commands.

mod calibrate;
mod detect;
mod eval;
mod keys;
mod serve;
mod train;

pub use keys::KeysCommand;
pub use serve::StoreArgs;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::eval::transform::Perturbations;
use crate::forensics::provenance::ProvenanceConfig;
use crate::forensics::{DecodeLimits, Detector, DetectorConfig};

/// tellscan: tells whether an image was made by a generative model, and why.
#[derive(Debug, Parser)]
#[command(name = "tellscan", version, about)]
pub struct Cli {
    /// Largest accepted width × height of an image.
    #[arg(long, global = true, default_value_t = DecodeLimits::default().max_pixels)]
    pub max_pixels: u64,
    /// Largest accepted width or height of an image.
    #[arg(long, global = true, default_value_t = DecodeLimits::default().max_side)]
    pub max_side: u32,
    /// PEM file of C2PA trust anchors (none by default: manifests can be valid, never trusted).
    #[arg(long, global = true, env = "TELLSCAN_C2PA_TRUST_ANCHORS")]
    pub trust_anchors: Option<PathBuf>,
    /// The `ml` module's weights (from `tellscan train`).
    #[arg(long, global = true, env = "TELLSCAN_DETECTOR__WEIGHTS", default_value = crate::forensics::ml::DEFAULT_WEIGHTS)]
    pub weights: PathBuf,
    /// The calibrated fusion (from `tellscan calibrate`).
    #[arg(long, global = true, env = "TELLSCAN_DETECTOR__FUSION", default_value = crate::forensics::DEFAULT_FUSION)]
    pub fusion: PathBuf,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of `detect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per file, one per line.
    Json,
    /// One human-readable row per file.
    Table,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse image files and print one report per file.
    Detect {
        /// Image files (JPEG, PNG, WebP, HEIC/HEIF, AVIF).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// `json` (one object per line) or `table`.
        #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
        format: OutputFormat,
        /// Pretty-print JSON (one multi-line object per file).
        #[arg(long)]
        pretty: bool,
        /// Read evidence as for browser-extension traffic (wider uncertainty).
        #[arg(long)]
        extension: bool,
        /// Write one overlay PNG per image (the image with the fused pixel-module map over it) here.
        #[arg(long, value_name = "DIR")]
        heatmap: Option<PathBuf>,
    },
    /// Measure the detector on a labels CSV (`path,label,generator,source,license`).
    Eval {
        /// The labels file; paths in it are relative to its folder.
        labels: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Strip metadata, centre-crop 512×512 at native resolution, re-encode JPEG q90.
        #[arg(long)]
        normalize: bool,
        /// Put every image, of both classes alike, through a seeded random web chain (metadata
        /// stripped, crop, downscale with a random filter, JPEG/WebP/PNG re-encode, sometimes twice).
        #[arg(long)]
        web: bool,
        /// Seed of the web chains (each image's chain depends on it and on its path).
        #[arg(long, default_value_t = 1, requires = "web")]
        seed: u64,
        /// Degradations applied before detection, e.g. `jpeg:75,resize:0.5`.
        #[arg(long)]
        perturb: Option<Perturbations>,
        /// Write one CSV row per image (label, source, score, verdict, web chain, each module's
        /// score and abstention, flags) to this file.
        #[arg(long, value_name = "FILE.csv")]
        scores: Option<PathBuf>,
        /// Also give the figures of each source (the labels file's `source` column) and the AUC
        /// of each generated source against each real source.
        #[arg(long)]
        by_source: bool,
        /// Draw roc.png, histogram.png and reliability.png of the fused score into this folder.
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
    },
    /// Run the HTTP service (settings: config/default.toml, --config FILE, TELLSCAN_* variables).
    Serve {
        /// Address to listen on (default 127.0.0.1:8080; also TELLSCAN_ADDR).
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<std::net::SocketAddr>,
        /// Store settings.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage API keys in the configured store.
    Keys {
        /// Store settings.
        #[command(flatten)]
        store: StoreArgs,
        /// The operation.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Train the `ml` module's network on labels files (CPU, fixed seed) and save its weights.
    Train {
        /// A labels file (`path,label,generator,source,license`); repeat it to train on several
        /// corpora together.
        #[arg(long, required = true)]
        labels: Vec<PathBuf>,
        /// Where to write the weights; a record of the run goes beside it as `.json`.
        #[arg(long, default_value = crate::forensics::ml::DEFAULT_WEIGHTS)]
        out: PathBuf,
        /// Seed of every random choice.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Passes over the corpus.
        #[arg(long, default_value_t = crate::learn::train::TrainOptions::default().epochs)]
        epochs: usize,
        /// Stop after this many optimisation steps.
        #[arg(long)]
        max_steps: Option<usize>,
        /// Do not add up-sampled real photos as generated-like samples.
        #[arg(long)]
        no_synthetic: bool,
        /// Do not add aligned pairs (real regions and their latent-autoencoder reconstructions).
        #[arg(long)]
        no_aligned: bool,
        /// The TAESD-family autoencoder folder (`taef2_encoder.pth`, `taef2_decoder.pth`) that
        /// makes the aligned pairs.
        #[arg(long, value_name = "DIR", env = "TELLSCAN_TAESD", default_value = crate::learn::taesd::DEFAULT_DIR)]
        taesd: PathBuf,
        /// Cache of the reconstructions (rebuilt when missing); by default
        /// `~/tellscan-data/taesd-cache`.
        #[arg(long, value_name = "DIR")]
        aligned_cache: Option<PathBuf>,
        /// Leave the generated images of this labels file (as given to --labels) out of
        /// training; validation still scores them. Repeatable.
        #[arg(long, value_name = "FILE")]
        no_generated_from: Vec<String>,
        /// Run a grouped validation first: whole sources held out, in this many folds (one
        /// extra training per fold).
        #[arg(long, value_name = "FOLDS")]
        validate: Option<usize>,
        /// Write the validation's held-out scores here (`path,score`), for `tellscan calibrate`.
        #[arg(long, value_name = "FILE", requires = "validate")]
        held_out: Option<PathBuf>,
        /// Write each validation fold's weights and held-out sources here:
        /// `DIR/fold-{k}.safetensors` and `DIR/fold-{k}.sources.txt` (k from 1).
        #[arg(long, value_name = "DIR", requires = "validate")]
        fold_weights: Option<PathBuf>,
        /// Use only the first N rows of each labels file.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Fit the calibrated fusion over every module's output on a labels file (leave-one-source-out
    /// cross-validation) and write it (uses the `ml` weights, not an existing fusion file).
    Calibrate {
        /// A labels file (`path,label,generator,source,license`); repeat for several corpora.
        #[arg(long, required = true)]
        labels: Vec<PathBuf>,
        /// Where to write the fusion weights.
        #[arg(long, default_value = crate::forensics::DEFAULT_FUSION)]
        out: PathBuf,
        /// Held-out ML scores (`path,score`, from `tellscan train --held-out`) used instead of
        /// the ML module's in-sample scores on the training corpus.
        #[arg(long, value_name = "FILE")]
        ml_oof: Option<PathBuf>,
        /// Fold models from `tellscan train --validate K --fold-weights DIR`: each image's `ml`
        /// score comes from the fold model that never saw its source.
        #[arg(long, value_name = "DIR")]
        ml_folds: Option<PathBuf>,
        /// Seed of the web chains of the `web` condition.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Leave out the `web` condition (by default each image is analysed as it is and
        /// through a web chain).
        #[arg(long)]
        no_web: bool,
        /// Leave out the files as they are.
        #[arg(long)]
        no_raw: bool,
        /// Add the normalised condition (metadata stripped, centre 512×512, JPEG q90).
        #[arg(long)]
        normalized: bool,
        /// Write each sample's nested leave-one-source-out score to this CSV.
        #[arg(long, value_name = "FILE.csv")]
        held_out_scores: Option<PathBuf>,
    },
    /// Write the OpenAPI document the server serves (to stdout, or to --out).
    Openapi {
        /// Output file (e.g. openapi/openapi.json).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

impl Cli {
    fn detector_config(&self) -> DetectorConfig {
        DetectorConfig {
            limits: self.limits(),
            provenance: ProvenanceConfig { trust_anchors_pem: self.trust_anchors.clone() },
            ml_weights: Some(self.weights.clone()),
            fusion: Some(self.fusion.clone()),
        }
    }

    fn detector(&self) -> anyhow::Result<Detector> {
        Detector::new(&self.detector_config())
    }

    fn limits(&self) -> DecodeLimits {
        DecodeLimits { max_pixels: self.max_pixels, max_side: self.max_side }
    }
}

/// Parse the arguments and run; returns the process exit code.
pub fn main() -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match &cli.command {
        Command::Detect { files, format, pretty, extension, heatmap } => detect::run(
            &cli.detector()?,
            files,
            &detect::DetectArgs {
                format: *format,
                pretty: *pretty,
                options: crate::forensics::DetectOptions { from_extension: *extension },
                heatmap_dir: heatmap.clone(),
                limits: cli.limits(),
            },
        ),
        Command::Eval { labels, json, normalize, web, seed, perturb, scores, by_source, plot } => eval::run(
            &cli.detector()?,
            labels,
            eval::Outputs {
                json: *json,
                scores: scores.as_deref(),
                by_source: *by_source,
                plot: plot.as_deref(),
            },
            crate::eval::EvalOptions {
                normalize: *normalize,
                web: web.then_some(*seed),
                perturb: perturb.clone().unwrap_or_default(),
                limits: cli.limits(),
            },
        ),
        Command::Serve { addr, store } => serve::run(store, *addr),
        Command::Keys { store, command } => keys::run(store, command),
        Command::Train {
            labels,
            out,
            seed,
            epochs,
            max_steps,
            no_synthetic,
            no_aligned,
            taesd,
            aligned_cache,
            no_generated_from,
            validate,
            held_out,
            fold_weights,
            limit,
        } => train::run(&train::TrainArgs {
            labels: labels.clone(),
            out: out.clone(),
            options: crate::learn::train::TrainOptions {
                seed: *seed,
                epochs: *epochs,
                max_steps: *max_steps,
                synthetic: !no_synthetic,
                aligned: !no_aligned,
                skip_generated_of: no_generated_from.clone(),
                ..Default::default()
            },
            taesd: taesd.clone(),
            aligned_cache: aligned_cache.clone().unwrap_or_else(crate::learn::aligned::default_cache),
            validate: *validate,
            held_out: held_out.clone(),
            fold_weights: fold_weights.clone(),
            limit: *limit,
        }),
        Command::Calibrate {
            labels,
            out,
            ml_oof,
            ml_folds,
            seed,
            no_web,
            no_raw,
            normalized,
            held_out_scores,
        } => calibrate::run(
            &cli.detector_config(),
            labels,
            out,
            calibrate::CalibrateOptions {
                normalized: *normalized,
                raw: !no_raw,
                web: (!no_web).then_some(*seed),
                ml_oof: ml_oof.clone(),
                ml_folds: ml_folds.clone(),
                held_out_scores: held_out_scores.clone(),
                limits: cli.limits(),
                ..Default::default()
            },
        ),
        Command::Openapi { out } => {
            let spec = crate::http::openapi_json();
            match out {
                Some(path) => std::fs::write(path, spec + "\n")?,
                None => println!("{spec}"),
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
