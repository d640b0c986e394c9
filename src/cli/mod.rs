//! The command-line tool: argument parsing and the `detect`, `eval`, `train`, `calibrate`,
//! `serve`, `keys` and `openapi` commands.

mod calibrate;
mod detect;
mod eval;
mod keys;
mod serve;
mod train;

pub use keys::KeysCommand;

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::Settings;
use crate::eval::transform::Perturbations;
use crate::forensics::fusion::FusionWeights;
use crate::forensics::ml::MlModel;
use crate::forensics::weights::{WeightsSource, BUILT_IN_FUSION, BUILT_IN_MODEL};
use crate::forensics::{Detector, DetectorConfig};

/// tellscan: tells whether an image was made by a generative model, and why.
#[derive(Debug, Parser)]
#[command(name = "tellscan", about, disable_version_flag = true)]
pub struct Cli {
    /// Print the version and the SHA-256 of the model and fusion in use.
    #[arg(short = 'V', long)]
    pub version: bool,
    /// Options every command accepts, before or after its name.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options that apply to several commands; each is accepted before or after the command's
/// name and overrides the settings (`config/default.toml`, `--config`, `TELLSCAN_*`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// A TOML file layered over the defaults (also TELLSCAN_CONFIG).
    #[arg(long, global = true, env = "TELLSCAN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store (default ./data; also TELLSCAN_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use Redis for keys, counters and analyses (also TELLSCAN_REDIS_URL or REDIS_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,
    /// The `ml` module's weights (from `tellscan train`) instead of the built-in ones (also
    /// detector.weights, TELLSCAN_DETECTOR__WEIGHTS).
    #[arg(long, global = true, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// The calibrated fusion (from `tellscan calibrate`) instead of the built-in one (also
    /// detector.fusion, TELLSCAN_DETECTOR__FUSION).
    #[arg(long, global = true, value_name = "FILE")]
    pub fusion: Option<PathBuf>,
    /// PEM file of C2PA trust anchors (none by default: manifests can be valid, never trusted;
    /// also detector.trust_anchors, TELLSCAN_C2PA_TRUST_ANCHORS).
    #[arg(long, global = true, value_name = "PEM")]
    pub trust_anchors: Option<PathBuf>,
    /// Largest accepted width × height of an image (default 64000000; detector.max_pixels).
    #[arg(long, global = true)]
    pub max_pixels: Option<u64>,
    /// Largest accepted width or height of an image (default 16384; detector.max_side).
    #[arg(long, global = true)]
    pub max_side: Option<u32>,
}

impl GlobalArgs {
    /// The settings: defaults, the `--config` file, the environment, then these options.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = Settings::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            settings.server.data_dir = dir.clone();
        }
        if let Some(url) = &self.redis_url {
            settings.store.redis_url = url.clone();
        }
        let detector = &mut settings.detector;
        if let Some(path) = &self.weights {
            detector.weights = WeightsSource::File(path.clone());
        }
        if let Some(path) = &self.fusion {
            detector.fusion = WeightsSource::File(path.clone());
        }
        if let Some(path) = &self.trust_anchors {
            detector.trust_anchors = path.to_string_lossy().into_owned();
        }
        detector.max_pixels = self.max_pixels.unwrap_or(detector.max_pixels);
        detector.max_side = self.max_side.unwrap_or(detector.max_side);
        Ok(settings)
    }
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
    },
    /// Manage API keys in the configured store.
    Keys {
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
        /// Add aligned pairs: real regions and their latent-autoencoder reconstructions (not
        /// used by the shipped weights; see weights/MODEL_CARD.md).
        #[arg(long)]
        aligned: bool,
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
        /// Even out the sources in the loss: each sample weighs n^-X, n being how many samples
        /// of its kind its source gives (0: every sample alike; 1: every source alike).
        #[arg(long, value_name = "X", default_value_t = 0.0, value_parser = balance_exponent)]
        source_balance: f64,
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
        /// Write each sample's nested leave-one-source-out score, its leave-one-source-out fused
        /// probability and each module's score to this CSV.
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

/// Parse `--source-balance`: an exponent from 0 to 1.
fn balance_exponent(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is outside 0..=1"))
    }
}

/// `tellscan --version`: the version, then the SHA-256 and source of the model and fusion the
/// settings select (read, not loaded: a file that is there but invalid is still named).
fn print_version(settings: &Settings) -> anyhow::Result<()> {
    let (_, model) = settings.detector.weights.bytes(BUILT_IN_MODEL, MlModel::read)?;
    let (_, fusion) = settings.detector.fusion.bytes(BUILT_IN_FUSION, FusionWeights::read)?;
    println!("tellscan {}", env!("CARGO_PKG_VERSION"));
    println!("model  {model}");
    println!("fusion {fusion}");
    Ok(())
}

/// Measuring commands run from the project tree: when `weights/` there holds files other than
/// the ones built in (fresh from `tellscan train` or `calibrate`), say which ones are used.
fn warn_if_project_weights_differ(config: &DetectorConfig) {
    let shipped = [
        (&config.ml_weights, crate::forensics::ml::DEFAULT_WEIGHTS, BUILT_IN_MODEL, "--weights"),
        (&config.fusion, crate::forensics::DEFAULT_FUSION, BUILT_IN_FUSION, "--fusion"),
    ];
    for (source, file, built_in, flag) in shipped {
        if source != &Some(WeightsSource::BuiltIn) {
            continue;
        }
        if std::fs::read(Path::new(file)).is_ok_and(|bytes| bytes != built_in) {
            eprintln!(
                "note: {file} differs from the copy built into this binary, which is the one used; \
                 pass {flag} {file} to use the file, or rebuild"
            );
        }
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
    let settings = cli.global.settings()?;
    if cli.version {
        print_version(&settings)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let Some(command) = &cli.command else {
        Cli::command().print_help()?;
        return Ok(std::process::ExitCode::from(2));
    };
    let detector_config = settings.detector.detector_config();
    let limits = detector_config.limits;
    let detector = || Detector::new(&detector_config);
    match command {
        Command::Detect { files, format, pretty, extension, heatmap } => detect::run(
            &detector()?,
            files,
            &detect::DetectArgs {
                format: *format,
                pretty: *pretty,
                options: crate::forensics::DetectOptions { from_extension: *extension },
                heatmap_dir: heatmap.clone(),
                limits,
            },
        ),
        Command::Eval { labels, json, normalize, web, seed, perturb, scores, by_source, plot } => eval::run(
            &{
                warn_if_project_weights_differ(&detector_config);
                detector()?
            },
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
                limits,
            },
        ),
        Command::Serve { addr } => serve::run(settings, *addr),
        Command::Keys { command } => keys::run(&settings, command),
        Command::Train {
            labels,
            out,
            seed,
            epochs,
            max_steps,
            no_synthetic,
            aligned,
            taesd,
            aligned_cache,
            no_generated_from,
            source_balance,
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
                aligned: *aligned,
                skip_generated_of: no_generated_from.clone(),
                source_balance: *source_balance,
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
            &{
                warn_if_project_weights_differ(&detector_config);
                detector_config.clone()
            },
            labels,
            out,
            calibrate::CalibrateOptions {
                normalized: *normalized,
                raw: !no_raw,
                web: (!no_web).then_some(*seed),
                ml_oof: ml_oof.clone(),
                ml_folds: ml_folds.clone(),
                held_out_scores: held_out_scores.clone(),
                limits,
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
