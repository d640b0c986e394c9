//! Training the `ml` module's network on a labelled corpus, on the CPU, from a fixed seed.
//!
//! The corpora are biased (generated images are mostly PNG renders and grid cells, real ones
//! camera or web JPEGs), so every sample, of both classes alike, goes through a web chain
//! ([`crate::learn::web`]) drawn anew for each (epoch, sample) from the seed: only decoded
//! pixels are used (no metadata), the window is downscaled by the chain's factor with its
//! filter and re-encoded (JPEG, WebP or PNG, sometimes twice), so that format, size, metadata
//! and processing cannot carry the label. To keep it cheap the chain is drawn for the whole
//! window but applied to a crop just large enough to give 192-640 px after its downscale.
//! Generated images also get a prior JPEG compression at random quality most of the time
//! before the chain, as a camera's file has, so "compressed twice" is no shortcut.
//!
//! Real photos are used twice: as themselves (negative), and passed through an up-sampling
//! decoder (nearest, bilinear, or a transposed convolution with a random kernel, as
//! generators' last layers are) as "generated-like" positives that carry up-sampling traces
//! with a photo's content (Zhang, Karaman and Chang, "Detecting and Simulating Artifacts in
//! GAN Fake Images", 2019), and, where they are attached, as aligned pairs: a region of the
//! photo (negative) and the same region after a round trip through a latent autoencoder
//! (positive, [`crate::learn::aligned`]), cut, flipped and processed by the same web chain, so
//! that content, size, format and processing are equal on both sides and only the decoder's
//! trace is left to learn (Rajan et al., ICLR 2025; Guillaro et al., B-Free, CVPR 2025).
//!
//! Validation is grouped: [`grouped_validation`] holds out whole sources (a fold is a set of
//! sources of both classes with about as many images as the others, [`group_folds`]), trains
//! on the rest, and scores the held-out images after the web chain that `tellscan eval --web`
//! draws for them (and, for comparison, as `tellscan eval --normalize` prepares them). Never a
//! random image split. Training cuts its patches at native resolution; the validation scores
//! through [`MlModel::score`], which reads the picture halved as the detector does.

use std::path::Path;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use image::{imageops, RgbImage};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::balance::group_size_weights;
use super::labels::LabelRow;
use super::metrics::roc_auc;
use super::transform::{centre_crop, encode_jpeg, NORMALIZED_QUALITY, NORMALIZED_SIDE};
use crate::forensics::decode::{decode, DecodeLimits};
use crate::forensics::ml::net::{parameter_shapes, Net, CHANNELS, PATCH};
use crate::forensics::ml::patches::{residual_patches, select};
use crate::forensics::ml::MlModel;
use crate::learn::aligned::{chosen, CacheReport, Pair, Reconstructor};
use crate::learn::web::{downscale, rng_for, Filter, Step, WebChain};

/// Largest side kept of a training image (a centred window, like the pixel modules' window).
const MAX_SIDE: u32 = 2048;
/// Sides of a training sample after its web chain (the crop before it is larger by the chain's
/// downscale factor).
const CROP_SIDES: (u32, u32) = (192, 640);
/// Seed of the web chains the held-out images go through: `tellscan eval --web`'s default, so
/// each held-out image gets the chain `eval --web` gives it.
pub const VALIDATION_WEB_SEED: u64 = 1;

/// How to train.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Seed of every random choice (initial weights, augmentation, order).
    pub seed: u64,
    /// Passes over the corpus (each with fresh augmentations).
    pub epochs: usize,
    /// Patches per optimisation step.
    pub batch: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Patches taken from each augmented sample.
    pub patches_per_sample: usize,
    /// Add up-sampled real photos as generated-like positives.
    pub synthetic: bool,
    /// Add aligned pairs (a real region and its autoencoder reconstruction) where the examples
    /// carry them (off by default: measured, they did not help, see `weights/MODEL_CARD.md`).
    #[serde(default)]
    pub aligned: bool,
    /// Leave the generated images of these labels files (as given) out of training; they are
    /// still scored in validation.
    #[serde(default)]
    pub skip_generated_of: Vec<String>,
    /// How much training evens out the sources: each sample weighs `n^-source_balance` in the
    /// loss, where `n` is how many samples of its kind (plain, synthetic, aligned) its source
    /// gives, before each class is scaled to half of the loss. 0 weighs every sample alike, 1
    /// every source alike; 0.5 lets a large source count more, but only as the root of its size.
    #[serde(default)]
    pub source_balance: f64,
    /// Stop after this many steps (for tests); `None` runs every epoch.
    pub max_steps: Option<usize>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            seed: 7,
            epochs: 24,
            batch: 64,
            learning_rate: 2e-3,
            patches_per_sample: 8,
            synthetic: true,
            aligned: false,
            skip_generated_of: Vec::new(),
            source_balance: 0.0,
            max_steps: None,
        }
    }
}

/// One labelled image, decoded.
#[derive(Debug, Clone)]
pub struct Example {
    /// Path as the labels file gives it (relative to its folder).
    pub path: String,
    /// Generated (or partly generated) rather than captured.
    pub positive: bool,
    /// Validation group (the `source` column).
    pub group: String,
    /// Pixels (at most `MAX_SIDE` (2048) on a side, a centred window).
    pub pixels: RgbImage,
    /// The labels file it came from, as given.
    pub labels_file: String,
    /// For a real photo: a region of `pixels` and its autoencoder reconstruction
    /// ([`crate::learn::aligned`]), once attached.
    pub pair: Option<Pair>,
}

impl Example {
    /// Whether training under `options` uses this example (validation scores every example).
    fn trains_under(&self, options: &TrainOptions) -> bool {
        !(self.positive && options.skip_generated_of.contains(&self.labels_file))
    }
}

/// Attach an aligned pair to the real examples [`chosen`] picks (those large enough), from
/// `reconstructor`'s cache or computed now.
pub fn attach_pairs(examples: &mut [Example], reconstructor: &Reconstructor) -> CacheReport {
    let real: Vec<(usize, &Example)> = examples.iter().enumerate().filter(|(_, e)| !e.positive).collect();
    let sources: Vec<(&str, &str)> = real.iter().map(|(_, e)| (e.group.as_str(), e.path.as_str())).collect();
    let photos: Vec<(usize, &str, &RgbImage)> = chosen(&sources)
        .into_iter()
        .map(|j| (real[j].0, real[j].1.path.as_str(), &real[j].1.pixels))
        .collect();
    let keys: Vec<(&str, &RgbImage)> = photos.iter().map(|&(_, k, p)| (k, p)).collect();
    let (pairs, report) = reconstructor.pairs(&keys);
    let indices: Vec<usize> = photos.iter().map(|&(i, _, _)| i).collect();
    for (i, pair) in indices.into_iter().zip(pairs) {
        examples[i].pair = pair;
    }
    report
}

/// Decode the rows of a labels file (`labels_file`, as given); rows that do not decode are
/// reported and skipped. An example's path is the row's path as written in the labels file (the
/// key of its web chain).
pub fn load_examples(rows: &[LabelRow], labels_file: &str) -> Vec<Example> {
    let limits = DecodeLimits::default();
    rows.par_iter()
        .filter_map(|row| {
            let bytes = match std::fs::read(&row.path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("skipping {}: {e}", row.path.display());
                    return None;
                }
            };
            let image = match decode(&bytes, &limits) {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!("skipping {}: {e}", row.path.display());
                    return None;
                }
            };
            let pixels = window(image.rgb);
            Some(Example {
                path: row.key.clone(),
                positive: row.label.is_ai(),
                group: row.source.clone(),
                pixels,
                labels_file: labels_file.to_string(),
                pair: None,
            })
        })
        .collect()
}

/// A centred window of at most [`MAX_SIDE`] on a side, on the 8×8 grid.
fn window(rgb: RgbImage) -> RgbImage {
    let (w, h) = (rgb.width().min(MAX_SIDE), rgb.height().min(MAX_SIDE));
    if (w, h) == rgb.dimensions() {
        return rgb;
    }
    let (x, y) = ((rgb.width() - w) / 2 / 8 * 8, (rgb.height() - h) / 2 / 8 * 8);
    imageops::crop_imm(&rgb, x, y, w, h).to_image()
}

/// A trained network with the variables behind it and its loss curve.
pub struct Trained {
    /// The variables (what is saved).
    pub varmap: VarMap,
    /// The network over them.
    pub net: Net,
    /// Mean loss of each step, in order.
    pub losses: Vec<f32>,
}

impl Trained {
    /// The trained model, for scoring.
    pub fn model(&self) -> MlModel {
        MlModel::from_net(self.net.clone())
    }
}

/// Train on `examples` (all of them) with `options`.
pub fn train(examples: &[&Example], options: &TrainOptions) -> anyhow::Result<Trained> {
    let examples: Vec<&Example> = examples.iter().copied().filter(|e| e.trains_under(options)).collect();
    let examples = examples.as_slice();
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let net = Net::new(VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
    initialise(&varmap, options.seed)?;
    let mut optimiser = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW { lr: options.learning_rate, weight_decay: 1e-4, ..Default::default() },
    )?;
    let mut losses = Vec::new();
    let patch_len = CHANNELS * PATCH * PATCH;
    'epochs: for epoch in 0..options.epochs {
        let (patches, labels, balance) = epoch_patches(examples, options, epoch);
        let count = labels.len();
        if count == 0 {
            anyhow::bail!("no training patches: every example is smaller than {PATCH} px");
        }
        // each class weighs half of the loss, whatever the class balance
        let class_weight = |positive: bool| {
            let sum: f32 =
                labels.iter().zip(&balance).filter(|(&l, _)| (l > 0.5) == positive).map(|(_, &b)| b).sum();
            sum.max(1.0)
        };
        let (positives, negatives) = (class_weight(true), class_weight(false));
        let mut order: Vec<usize> = (0..count).collect();
        order.shuffle(&mut StdRng::seed_from_u64(mix(options.seed, epoch as u64, u64::MAX)));
        for chunk in order.chunks(options.batch.max(1)) {
            let mut data = Vec::with_capacity(chunk.len() * patch_len);
            let mut targets = Vec::with_capacity(chunk.len());
            let mut weights = Vec::with_capacity(chunk.len());
            for &i in chunk {
                data.extend_from_slice(&patches[i * patch_len..(i + 1) * patch_len]);
                targets.push(labels[i]);
                weights.push(
                    if labels[i] > 0.5 { 0.5 / positives } else { 0.5 / negatives }
                        * count as f32
                        * balance[i],
                );
            }
            let n = chunk.len();
            let input = Tensor::from_vec(data, (n, CHANNELS, PATCH, PATCH), &device)?;
            let target = Tensor::from_vec(targets, n, &device)?;
            let weight = Tensor::from_vec(weights, n, &device)?;
            let logits = net.forward(&input)?;
            let loss = (bce_with_logits(&logits, &target)? * weight)?.mean_all()?;
            optimiser.backward_step(&loss)?;
            losses.push(loss.to_scalar::<f32>()?);
            if options.max_steps.is_some_and(|max| losses.len() >= max) {
                break 'epochs;
            }
        }
        tracing::info!(epoch, loss = losses.last().copied().unwrap_or_default(), "training");
    }
    Ok(Trained { varmap, net, losses })
}

/// Numerically stable binary cross-entropy on logits, per sample.
fn bce_with_logits(logits: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    // max(x, 0) - x·y + log(1 + exp(-|x|))
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (logits.relu()? - (logits * target)?)? + softplus
}

/// He-uniform weights and zero biases, from `seed` (candle's own initialisation is not seeded).
fn initialise(varmap: &VarMap, seed: u64) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let vars = varmap.data().lock().map_err(|_| anyhow::anyhow!("the variable map is poisoned"))?;
    for (name, shape) in parameter_shapes() {
        let var = vars.get(&name).with_context(|| format!("variable {name} was not created"))?;
        let len: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with(".bias") {
            vec![0.0; len]
        } else {
            let fan_in: usize = shape[1..].iter().product();
            let bound = (6.0 / fan_in as f32).sqrt();
            (0..len).map(|_| rng.random_range(-bound..bound)).collect()
        };
        var.set(&Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?)?;
    }
    Ok(())
}

/// A seed for one (epoch, sample) pair, independent of thread scheduling.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut x = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x
}

/// What one (epoch, example) job makes.
#[derive(Debug, Clone, Copy)]
enum Job {
    /// The example itself, under its label.
    Plain(usize),
    /// A real photo up-sampled like a generator's output (positive).
    Synthetic(usize),
    /// A real photo's aligned pair: its region (negative) and its reconstruction (positive),
    /// through the same crop, flip and web chain.
    Aligned(usize),
}

impl Job {
    fn index(self) -> (usize, u64) {
        match self {
            Job::Plain(i) => (i, 0),
            Job::Synthetic(i) => (i, 1),
            Job::Aligned(i) => (i, 2),
        }
    }
}

/// The patches (flattened), labels and source-balance weights ([`TrainOptions::source_balance`])
/// of one epoch: every example once, augmented; every real photo once more as a generated-like
/// sample when `options.synthetic`; and every aligned pair when `options.aligned`.
fn epoch_patches(
    examples: &[&Example],
    options: &TrainOptions,
    epoch: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut jobs: Vec<Job> = (0..examples.len()).map(Job::Plain).collect();
    let real = || (0..examples.len()).filter(|&i| !examples[i].positive);
    if options.synthetic {
        jobs.extend(real().map(Job::Synthetic));
    }
    if options.aligned {
        jobs.extend(real().filter(|&i| examples[i].pair.is_some()).map(Job::Aligned));
    }
    let balance = source_balance(examples, &jobs, options.source_balance);
    let samples: Vec<Vec<(Vec<f32>, usize, f32)>> = jobs
        .par_iter()
        .map(|&job| {
            let (i, kind) = job.index();
            let mut rng = StdRng::seed_from_u64(mix(options.seed, epoch as u64, (i as u64) << 2 | kind));
            let example = examples[i];
            let sample = |image: &RgbImage, corners: &[(usize, usize)], label: f32| {
                (residual_patches(image, corners), corners.len(), label)
            };
            match (job, &example.pair) {
                (Job::Aligned(_), Some(pair)) => {
                    let (w, h) = example.pixels.dimensions();
                    let (real, decoded) = augment_pair(pair, w, h, &mut rng);
                    // the same patches of both members, so only the decoder's trace differs
                    let corners = select(&real, options.patches_per_sample);
                    vec![sample(&real, &corners, 0.0), sample(&decoded, &corners, 1.0)]
                }
                _ => {
                    let synthetic = matches!(job, Job::Synthetic(_));
                    let image = augment(&example.pixels, example.positive, synthetic, &mut rng);
                    let corners = select(&image, options.patches_per_sample);
                    vec![sample(&image, &corners, if example.positive || synthetic { 1.0 } else { 0.0 })]
                }
            }
        })
        .collect();
    let mut patches = Vec::new();
    let mut labels = Vec::new();
    let mut weights = Vec::new();
    for (job_samples, weight) in samples.into_iter().zip(balance) {
        for (data, n, label) in job_samples {
            patches.extend(data);
            labels.extend(std::iter::repeat_n(label, n));
            weights.extend(std::iter::repeat_n(weight, n));
        }
    }
    (patches, labels, weights)
}

/// Each job's weight `n^-exponent`, `n` being how many jobs of its kind its example's source
/// gives (1 for every job when `exponent` is 0).
fn source_balance(examples: &[&Example], jobs: &[Job], exponent: f64) -> Vec<f32> {
    let keys: Vec<(&str, u64)> = jobs
        .iter()
        .map(|job| {
            let (i, kind) = job.index();
            (examples[i].group.as_str(), kind)
        })
        .collect();
    group_size_weights(&keys, exponent).into_iter().map(|w| w as f32).collect()
}

/// Where and how one sample is cut and processed: a web chain drawn for the whole image
/// (`width`×`height`), acting on a crop of an `available`-sized area that its downscale brings
/// to 192-640 px.
struct Cut {
    x: u32,
    y: u32,
    side: u32,
    factor: f64,
    filter: Option<Filter>,
    chain: WebChain,
}

impl Cut {
    fn draw(rng: &mut StdRng, width: u32, height: u32, available: (u32, u32)) -> Cut {
        let chain = WebChain::draw(rng, width, height);
        let (factor, filter) = downscale_of(&chain, width);
        let out_side = rng.random_range(CROP_SIDES.0..=CROP_SIDES.1);
        let (aw, ah) = available;
        let side = ((f64::from(out_side) / factor).round() as u32).min(aw).min(ah);
        // on the 8×8 grid, so a source's own JPEG blocks stay aligned
        let side = if side >= 8 { side / 8 * 8 } else { side };
        let x = rng.random_range(0..=(aw - side) / 8) * 8;
        let y = rng.random_range(0..=(ah - side) / 8) * 8;
        Cut { x, y, side, factor, filter, chain }
    }

    fn crop(&self, pixels: &RgbImage) -> RgbImage {
        imageops::crop_imm(pixels, self.x, self.y, self.side, self.side).to_image()
    }

    /// The chain (its downscale and encodings) applied to a crop.
    fn process(&self, image: RgbImage) -> RgbImage {
        let on_crop = chain_for_crop(&self.chain, image.width(), image.height(), self.factor, self.filter);
        match on_crop.apply(&image, &DecodeLimits::default()) {
            Ok(processed) => processed.rgb,
            Err(e) => {
                tracing::warn!("web chain {on_crop} failed on a {} px crop: {e}", self.side);
                image
            }
        }
    }
}

/// A generated image's prior compression, as a camera's or a web photo's file has (so that
/// "compressed twice" is no shortcut): JPEG at quality 80-97 with probability 0.7.
fn prior_compression(image: RgbImage, rng: &mut StdRng) -> RgbImage {
    if rng.random_bool(0.7) {
        jpeg_round_trip(&image, rng.random_range(80..=97))
    } else {
        image
    }
}

/// One training sample from an image (see the module documentation): a web chain drawn for
/// the whole image, applied to a crop that its downscale brings to 192-640 px. Generated
/// images may first get a JPEG compression; `synthetic` samples are up-sampled like a
/// generator's output before the chain, as a generator's decoder runs before a platform's
/// processing.
pub fn augment(pixels: &RgbImage, positive: bool, synthetic: bool, rng: &mut StdRng) -> RgbImage {
    let (w, h) = pixels.dimensions();
    let cut = Cut::draw(rng, w, h, (w, h));
    let mut image = cut.crop(pixels);
    if positive {
        image = prior_compression(image, rng);
    }
    if synthetic {
        image = upsampled_like_a_generator(&image, rng);
    }
    if rng.random_bool(0.5) {
        imageops::flip_horizontal_in_place(&mut image);
    }
    cut.process(image)
}

/// The two members of an aligned pair as training samples: the same crop of the region, the
/// same flip and the same web chain (drawn for the whole `width`×`height` photo). The
/// reconstruction gets a generated image's prior compression, as in [`augment`].
pub fn augment_pair(pair: &Pair, width: u32, height: u32, rng: &mut StdRng) -> (RgbImage, RgbImage) {
    let cut = Cut::draw(rng, width, height, pair.real.dimensions());
    let mut real = cut.crop(&pair.real);
    let mut decoded = prior_compression(cut.crop(&pair.decoded), rng);
    if rng.random_bool(0.5) {
        imageops::flip_horizontal_in_place(&mut real);
        imageops::flip_horizontal_in_place(&mut decoded);
    }
    (cut.process(real), cut.process(decoded))
}

/// The downscale factor of a chain drawn for an image `width` px wide (1 when it does not
/// resize), and its filter.
fn downscale_of(chain: &WebChain, width: u32) -> (f64, Option<Filter>) {
    let mut w = width;
    for step in &chain.steps {
        match *step {
            Step::Crop { width, .. } => w = width,
            Step::Resize { width, filter, .. } => {
                return ((f64::from(width) / f64::from(w.max(1))).clamp(0.01, 1.0), Some(filter))
            }
            Step::Encode(_) => {}
        }
    }
    (1.0, None)
}

/// The chain as it acts on a crop of `width`×`height`: no crop of its own, the same downscale
/// factor and filter (never below one patch unless the crop already is), the same encodings.
fn chain_for_crop(
    chain: &WebChain,
    width: u32,
    height: u32,
    factor: f64,
    filter: Option<Filter>,
) -> WebChain {
    let mut steps: Vec<Step> = filter
        .and_then(|filter| downscale(width, height, factor, filter, PATCH as u32))
        .into_iter()
        .collect();
    steps.extend(chain.steps.iter().filter(|s| matches!(s, Step::Encode(_))).copied());
    WebChain { steps }
}

/// Encode as JPEG at `quality` and decode again.
fn jpeg_round_trip(image: &RgbImage, quality: u8) -> RgbImage {
    let jpeg = encode_jpeg(image, quality);
    image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .map(|i| i.to_rgb8())
        .unwrap_or_else(|_| image.clone())
}

/// Halve the image, then double it back the way a generator's last layer might: nearest
/// neighbour, bilinear, or a transposed convolution with a random 4×4 kernel.
fn upsampled_like_a_generator(image: &RgbImage, rng: &mut StdRng) -> RgbImage {
    let (w, h) = (image.width() / 2, image.height() / 2);
    if w < PATCH as u32 / 2 || h < PATCH as u32 / 2 {
        return image.clone();
    }
    let small = imageops::resize(image, w, h, imageops::FilterType::Triangle);
    match rng.random_range(0..3) {
        0 => imageops::resize(&small, w * 2, h * 2, imageops::FilterType::Nearest),
        1 => imageops::resize(&small, w * 2, h * 2, imageops::FilterType::Triangle),
        _ => transposed_convolution(&small, &random_kernel(rng)),
    }
}

/// A random positive 4×4 kernel whose taps for each output phase sum to 1 (so brightness is
/// kept and only the up-sampling pattern remains).
fn random_kernel(rng: &mut StdRng) -> [[f32; 4]; 4] {
    let mut k = [[0f32; 4]; 4];
    for row in &mut k {
        for v in row.iter_mut() {
            *v = rng.random_range(0.05..1.0);
        }
    }
    for py in 0..2 {
        for px in 0..2 {
            let sum: f32 = (0..2)
                .flat_map(|i| (0..2).map(move |j| (py + 2 * i, px + 2 * j)))
                .map(|(a, b)| k[a][b])
                .sum();
            for i in 0..2 {
                for j in 0..2 {
                    k[py + 2 * i][px + 2 * j] /= sum;
                }
            }
        }
    }
    k
}

/// Stride-2 transposed convolution of `small` with `kernel`: output pixel (2y+py, 2x+px) is the
/// sum of the 2×2 input pixels its phase's taps reach.
fn transposed_convolution(small: &RgbImage, kernel: &[[f32; 4]; 4]) -> RgbImage {
    let (w, h) = small.dimensions();
    RgbImage::from_fn(w * 2, h * 2, |ox, oy| {
        let (py, px) = ((oy % 2) as usize, (ox % 2) as usize);
        let (y, x) = (oy / 2, ox / 2);
        let mut acc = [0f32; 3];
        for i in 0..2u32 {
            for j in 0..2u32 {
                let sy = (y + i).saturating_sub(1).min(h - 1);
                let sx = (x + j).saturating_sub(1).min(w - 1);
                let tap = kernel[py + 2 * i as usize][px + 2 * j as usize];
                let p = small.get_pixel(sx, sy);
                for c in 0..3 {
                    acc[c] += tap * f32::from(p[c]);
                }
            }
        }
        image::Rgb(acc.map(|v| v.round().clamp(0.0, 255.0) as u8))
    })
}

/// An image prepared as `tellscan eval --normalize` prepares it: the centred 512×512 crop at
/// native resolution (the whole image when smaller), re-encoded as JPEG q90.
pub fn normalised(pixels: &RgbImage) -> RgbImage {
    let crop = centre_crop(pixels, NORMALIZED_SIDE).unwrap_or_else(|| pixels.clone());
    jpeg_round_trip(&crop, NORMALIZED_QUALITY)
}

/// One held-out prediction of the grouped validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldOut {
    /// The image's path in the labels file.
    pub path: String,
    /// Its group.
    pub group: String,
    /// Its label.
    pub positive: bool,
    /// Probability of "generated" from the model that did not see its group, on the image after
    /// its web chain ([`VALIDATION_WEB_SEED`]).
    pub score: f64,
    /// The same model's probability on the image as `tellscan eval --normalize` prepares it.
    #[serde(default)]
    pub normalised_score: Option<f64>,
    /// The web chain the image went through.
    #[serde(default)]
    pub chain: String,
}

/// The outcome of a grouped validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Validation {
    /// The groups held out together in each fold.
    pub folds: Vec<Vec<String>>,
    /// ROC AUC within each fold (both classes are in every fold when the groups allow), under
    /// the web chain.
    pub fold_auc: Vec<Option<f64>>,
    /// ROC AUC within each fold on normalised images (512 crop, JPEG q90).
    #[serde(default)]
    pub fold_auc_normalised: Vec<Option<f64>>,
    /// Every held-out prediction.
    pub held_out: Vec<HeldOut>,
    /// ROC AUC over all held-out predictions pooled (mixes the folds' models), under the web
    /// chain.
    pub auc: Option<f64>,
    /// The same on normalised images.
    #[serde(default)]
    pub auc_normalised: Option<f64>,
    /// Share of real images scored ≥ 0.5.
    pub false_positive_rate: f64,
    /// Share of generated images scored ≥ 0.5.
    pub true_positive_rate: f64,
}

/// Assign whole groups to `folds` folds so that every fold holds groups of both classes and
/// about as many images of each class as the others: each group counts for its majority class;
/// the groups of each class, largest first, go to the fold that has the fewest images of that
/// class so far (greedy longest-first balancing).
pub fn group_folds(examples: &[Example], folds: usize) -> Vec<Vec<String>> {
    use std::collections::BTreeMap;
    let folds = folds.max(2);
    let mut counts: BTreeMap<&str, [usize; 2]> = BTreeMap::new();
    for e in examples {
        counts.entry(e.group.as_str()).or_default()[usize::from(e.positive)] += 1;
    }
    let mut out = vec![Vec::new(); folds];
    let mut load = vec![[0usize; 2]; folds];
    for class in [1usize, 0] {
        let mut groups: Vec<(&str, [usize; 2])> = counts
            .iter()
            .filter(|(_, c)| usize::from(c[1] >= c[0]) == class)
            .map(|(g, c)| (*g, *c))
            .collect();
        groups.sort_by(|a, b| b.1[class].cmp(&a.1[class]).then(a.0.cmp(b.0)));
        for (group, c) in groups {
            let k = (0..folds).min_by_key(|&k| (load[k][class], load[k][0] + load[k][1], k)).unwrap_or(0);
            out[k].push(group.to_string());
            load[k][0] += c[0];
            load[k][1] += c[1];
        }
    }
    out.retain(|f| !f.is_empty());
    out
}

/// Hold out each fold's groups in turn: train on the other groups, score the held-out images
/// after their web chain (and normalised). With `fold_weights`, fold k's weights (k from 1)
/// go to `DIR/fold-{k}.safetensors` and its held-out sources, one a line, to
/// `DIR/fold-{k}.sources.txt`, as soon as that fold is trained.
pub fn grouped_validation(
    examples: &[Example],
    options: &TrainOptions,
    folds: &[Vec<String>],
    fold_weights: Option<&Path>,
) -> anyhow::Result<Validation> {
    if let Some(dir) = fold_weights {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut held_out = Vec::new();
    let mut fold_auc = Vec::new();
    let mut fold_auc_normalised = Vec::new();
    for (k, fold) in folds.iter().enumerate() {
        let held = |e: &Example| fold.contains(&e.group);
        let training: Vec<&Example> = examples.iter().filter(|e| !held(e)).collect();
        let testing: Vec<&Example> = examples.iter().filter(|e| held(e)).collect();
        tracing::info!(?fold, train = training.len(), test = testing.len(), "fold");
        let trained = train(&training, options)?;
        if let Some(dir) = fold_weights {
            let weights = dir.join(format!("fold-{}.safetensors", k + 1));
            trained.varmap.save(&weights).with_context(|| format!("cannot write {}", weights.display()))?;
            let sources = dir.join(format!("fold-{}.sources.txt", k + 1));
            std::fs::write(&sources, fold.iter().map(|g| format!("{g}\n")).collect::<String>())
                .with_context(|| format!("cannot write {}", sources.display()))?;
        }
        let model = trained.model();
        let this_fold: Vec<HeldOut> = testing.par_iter().filter_map(|e| held_out_score(&model, e)).collect();
        fold_auc.push(auc_of(&this_fold, |h| Some(h.score)));
        fold_auc_normalised.push(auc_of(&this_fold, |h| h.normalised_score));
        held_out.extend(this_fold);
    }
    let rate = |positive: bool| {
        let of_class: Vec<_> = held_out.iter().filter(|h| h.positive == positive).collect();
        of_class.iter().filter(|h| h.score >= 0.5).count() as f64 / of_class.len().max(1) as f64
    };
    Ok(Validation {
        folds: folds.to_vec(),
        fold_auc,
        fold_auc_normalised,
        auc: auc_of(&held_out, |h| Some(h.score)),
        auc_normalised: auc_of(&held_out, |h| h.normalised_score),
        false_positive_rate: rate(false),
        true_positive_rate: rate(true),
        held_out,
    })
}

/// Score one held-out image after the web chain `tellscan eval --web` draws for it (applied to
/// the example's window), and normalised; `None` when the chain fails or it is too small.
pub fn held_out_score(model: &MlModel, e: &Example) -> Option<HeldOut> {
    let chain =
        WebChain::draw(&mut rng_for(VALIDATION_WEB_SEED, &e.path), e.pixels.width(), e.pixels.height());
    let processed = match chain.apply(&e.pixels, &DecodeLimits::default()) {
        Ok(p) => p,
        Err(err) => {
            tracing::warn!("{}: web chain {chain} failed: {err}", e.path);
            return None;
        }
    };
    let score = model.score(&processed.rgb)?;
    Some(HeldOut {
        path: e.path.clone(),
        group: e.group.clone(),
        positive: e.positive,
        score,
        normalised_score: model.score(&normalised(&e.pixels)),
        chain: chain.to_string(),
    })
}

/// ROC AUC of the scores `score` picks (images without one left out).
pub fn auc_of(held: &[HeldOut], score: impl Fn(&HeldOut) -> Option<f64>) -> Option<f64> {
    let (scores, labels): (Vec<f64>, Vec<bool>) =
        held.iter().filter_map(|h| score(h).map(|s| (s, h.positive))).unzip();
    roc_auc(&scores, &labels)
}

/// A fixed input for checking that saved weights reproduce the training process's output:
/// [`crate::forensics::ml::INFERENCE_PATCHES`] residual patches of a deterministic synthetic picture.
pub fn golden_input() -> RgbImage {
    RgbImage::from_fn(256, 192, |x, y| {
        let v = x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503).rotate_left(7);
        image::Rgb([(v >> 24) as u8, ((x * 3 + y * 5) % 256) as u8, ((v >> 8) as u8) / 2 + (y % 128) as u8])
    })
}

/// What training records next to the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRecord {
    /// The labels files trained on, as given.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The options used.
    pub options: TrainOptions,
    /// Examples by class: generated, real (real ones also made the synthetic positives).
    pub examples: (usize, usize),
    /// Optimisation steps taken.
    pub steps: usize,
    /// Mean loss of the first and of the last 20 steps.
    pub loss_start: f32,
    /// See `loss_start`.
    pub loss_end: f32,
    /// Logits of the network on the patches of [`golden_input`].
    pub golden_logits: Vec<f32>,
    /// The grouped validation, when run.
    pub validation: Option<Validation>,
}

/// Mean of the first and the last `n` values.
pub fn loss_ends(losses: &[f32], n: usize) -> (f32, f32) {
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    let n = n.min(losses.len());
    (mean(&losses[..n]), mean(&losses[losses.len() - n..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(group: &str, positive: bool, side: u32) -> Example {
        Example {
            path: format!("{group}/{side}.png"),
            positive,
            group: group.to_string(),
            labels_file: "labels.csv".to_string(),
            pair: None,
            pixels: RgbImage::from_fn(side, side, |x, y| {
                let v = x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503);
                image::Rgb([(v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8])
            }),
        }
    }

    #[test]
    fn source_balance_weighs_each_source_by_a_power_of_its_size() {
        let examples =
            [example("a", false, 8), example("a", false, 8), example("a", false, 8), example("b", false, 8)];
        let refs: Vec<&Example> = examples.iter().collect();
        // the synthetic jobs are counted apart from the plain ones
        let jobs = [Job::Plain(0), Job::Plain(1), Job::Plain(2), Job::Plain(3), Job::Synthetic(0)];
        assert_eq!(source_balance(&refs, &jobs, 0.0), vec![1.0; 5]);
        let third = 1.0 / 3.0;
        assert_eq!(source_balance(&refs, &jobs, 1.0), vec![third, third, third, 1.0, 1.0]);
        let root = source_balance(&refs, &jobs, 0.5);
        let a: f32 = root[..3].iter().sum();
        assert!((a - 3f32.sqrt()).abs() < 1e-6, "source a weighs the root of its size: {a}");
        assert_eq!(root[3..], [1.0, 1.0]);
    }

    #[test]
    fn folds_hold_both_classes_and_about_equal_counts() {
        // one real source as large as all the others together, as clothing-dataset is
        let mut examples = Vec::new();
        for (group, positive, n) in [
            ("big-real", false, 26),
            ("real-a", false, 6),
            ("real-b", false, 5),
            ("real-c", false, 3),
            ("real-d", false, 2),
            ("ai-a", true, 6),
            ("ai-b", true, 5),
            ("ai-c", true, 5),
            ("ai-d", true, 4),
            ("mixed", true, 3),
            ("mixed", false, 1),
        ] {
            examples.extend((0..n).map(|i| example(group, positive, 64 + i)));
        }
        let folds = group_folds(&examples, 2);
        assert_eq!(folds.len(), 2);
        let count = |fold: &[String], positive: bool| {
            examples.iter().filter(|e| e.positive == positive && fold.contains(&e.group)).count()
        };
        for fold in &folds {
            assert!(count(fold, true) > 0 && count(fold, false) > 0, "{folds:?}");
        }
        // generated: 23 images in 5 groups dealt 13 / 10; the large real source alone against the
        // other 17 real images
        let ai: Vec<usize> = folds.iter().map(|f| count(f, true)).collect();
        assert!(ai.iter().max().unwrap() - ai.iter().min().unwrap() <= 3, "{ai:?}");
        assert_eq!(folds[1], ["ai-b", "ai-c", "big-real"], "{folds:?}");
        // every group in exactly one fold
        let mut all: Vec<&String> = folds.iter().flatten().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 10);
    }

    #[test]
    fn augmented_samples_hold_patches_and_are_reproducible() {
        for side in [80, 300, 1500] {
            let e = example("g", true, side);
            for sample in 0..12u64 {
                for synthetic in [false, true] {
                    let mut rng = StdRng::seed_from_u64(mix(7, 0, sample));
                    let a = augment(&e.pixels, e.positive, synthetic, &mut rng);
                    let (w, h) = a.dimensions();
                    assert!(w >= PATCH as u32 && h >= PATCH as u32, "{side}: {w}x{h}");
                    assert!(w <= CROP_SIDES.1 + 8 && h <= CROP_SIDES.1 + 8, "{side}: {w}x{h}");
                    let mut rng = StdRng::seed_from_u64(mix(7, 0, sample));
                    assert_eq!(a, augment(&e.pixels, e.positive, synthetic, &mut rng));
                }
            }
        }
    }

    #[test]
    fn the_chain_on_a_crop_keeps_the_factor_filter_and_encodings() {
        let chain = WebChain {
            steps: vec![
                Step::Crop { x: 0, y: 0, width: 1000, height: 800 },
                Step::Resize { width: 500, height: 400, filter: Filter::Lanczos },
                Step::Encode(crate::learn::web::Encoding::Png),
            ],
        };
        let (factor, filter) = downscale_of(&chain, 2000);
        assert!((factor - 0.5).abs() < 1e-9 && filter == Some(Filter::Lanczos));
        let on_crop = chain_for_crop(&chain, 640, 640, factor, filter);
        assert_eq!(on_crop.to_string(), "resize 320x320 lanczos; png");
        // never below one patch
        let on_small = chain_for_crop(&chain, 96, 96, 0.25, filter);
        assert_eq!(on_small.to_string(), "resize 64x64 lanczos; png");
    }
}
