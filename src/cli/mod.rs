//! The command-line tool: argument parsing and the `detect`, `eval`, `serve`, `keys` and
//! `openapi` commands.

mod detect;
mod eval;
mod keys;
mod serve;

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
        /// Image files (JPEG, PNG, WebP, HEIC/HEIF).
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
        /// Degradations applied before detection, e.g. `jpeg:75,resize:0.5`.
        #[arg(long)]
        perturb: Option<Perturbations>,
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
    /// Write the OpenAPI document the server serves (to stdout, or to --out).
    Openapi {
        /// Output file (e.g. openapi/openapi.json).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

impl Cli {
    fn detector(&self) -> anyhow::Result<Detector> {
        Detector::new(&DetectorConfig {
            limits: self.limits(),
            provenance: ProvenanceConfig { trust_anchors_pem: self.trust_anchors.clone() },
        })
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
        Command::Eval { labels, json, normalize, perturb } => eval::run(
            &cli.detector()?,
            labels,
            *json,
            crate::eval::EvalOptions {
                normalize: *normalize,
                perturb: perturb.clone().unwrap_or_default(),
                limits: cli.limits(),
            },
        ),
        Command::Serve { addr, store } => serve::run(store, *addr),
        Command::Keys { store, command } => keys::run(store, command),
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
