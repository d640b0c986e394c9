//! Training the `ml` module's network on a labelled corpus, on the CPU, from a fixed seed.
//!
//! The corpus is small and biased (generated images are PNG renders, real ones camera JPEGs),
//! so the pixels are normalised before the network sees them, identically for both classes:
//! metadata is gone (only decoded pixels are used), every sample is a crop of 192-640 px at
//! native resolution on the 8×8 grid, optionally down-scaled, flipped, and re-encoded as JPEG
//! at a random quality. Generated images also get a prior JPEG compression at random quality
//! most of the time, as a camera's file has, so "compressed twice" is no shortcut.
//!
//! Real photos are used twice: as themselves (negative), and passed through an up-sampling
//! decoder (nearest, bilinear, or a transposed convolution with a random kernel, as
//! generators' last layers are) as "generated-like" positives that carry up-sampling traces
//! with a photo's content (Zhang, Karaman and Chang, "Detecting and Simulating Artifacts in
//! GAN Fake Images", 2019).
//!
//! Validation is grouped: [`grouped_validation`] holds out whole sources (a fold is a set of
//! sources of both classes, [`group_folds`]), trains on the rest, and scores the held-out
//! images as `tellscan eval --normalize` prepares them. Never a random image split.

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

use crate::forensics::ml::net::{parameter_shapes, Net, CHANNELS, PATCH};
use crate::forensics::ml::patches::{residual_patches, select};
use crate::forensics::ml::MlModel;
use crate::eval::metrics::roc_auc;
use crate::eval::transform::{centre_crop, encode_jpeg, NORMALIZED_QUALITY, NORMALIZED_SIDE};
use crate::eval::LabelRow;
use crate::forensics::decode::{decode, DecodeLimits};

/// Largest side kept of a training image (a centred window, like the pixel modules' window).
const MAX_SIDE: u32 = 2048;
/// Crop sides drawn for training samples.
const CROP_SIDES: (u32, u32) = (192, 640);

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
    /// Pixels (at most [`MAX_SIDE`] on a side, a centred window).
    pub pixels: RgbImage,
}

/// Decode the rows of a labels file (paths already resolved against `base`); rows that do not
/// decode are reported and skipped.
pub fn load_examples(rows: &[LabelRow], base: &Path) -> Vec<Example> {
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
            let path = row.path.strip_prefix(base).unwrap_or(&row.path).to_string_lossy().into_owned();
            Some(Example { path, positive: row.label.is_ai(), group: row.source.clone(), pixels })
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
        let (patches, labels) = epoch_patches(examples, options, epoch);
        let count = labels.len();
        if count == 0 {
            anyhow::bail!("no training patches: every example is smaller than {PATCH} px");
        }
        // each class weighs half of the loss, whatever the class balance
        let positives = labels.iter().filter(|&&l| l > 0.5).count().max(1) as f32;
        let negatives = (count as f32 - positives).max(1.0);
        let mut order: Vec<usize> = (0..count).collect();
        order.shuffle(&mut StdRng::seed_from_u64(mix(options.seed, epoch as u64, u64::MAX)));
        for chunk in order.chunks(options.batch.max(1)) {
            let mut data = Vec::with_capacity(chunk.len() * patch_len);
            let mut targets = Vec::with_capacity(chunk.len());
            let mut weights = Vec::with_capacity(chunk.len());
            for &i in chunk {
                data.extend_from_slice(&patches[i * patch_len..(i + 1) * patch_len]);
                targets.push(labels[i]);
                weights.push(if labels[i] > 0.5 { 0.5 / positives } else { 0.5 / negatives } * count as f32);
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

/// The patches (flattened) and labels of one epoch: every example once, augmented, and every
/// real photo once more as a generated-like sample when `options.synthetic`.
fn epoch_patches(examples: &[&Example], options: &TrainOptions, epoch: usize) -> (Vec<f32>, Vec<f32>) {
    let mut jobs: Vec<(usize, bool)> = (0..examples.len()).map(|i| (i, false)).collect();
    if options.synthetic {
        jobs.extend((0..examples.len()).filter(|&i| !examples[i].positive).map(|i| (i, true)));
    }
    let samples: Vec<(Vec<f32>, usize, f32)> = jobs
        .par_iter()
        .map(|&(i, synthetic)| {
            let mut rng =
                StdRng::seed_from_u64(mix(options.seed, epoch as u64, (i as u64) << 1 | synthetic as u64));
            let example = examples[i];
            let image = augment(&example.pixels, example.positive, synthetic, &mut rng);
            let corners = select(&image, options.patches_per_sample);
            let label = if example.positive || synthetic { 1.0 } else { 0.0 };
            (residual_patches(&image, &corners), corners.len(), label)
        })
        .collect();
    let mut patches = Vec::new();
    let mut labels = Vec::new();
    for (data, n, label) in samples {
        patches.extend(data);
        labels.extend(std::iter::repeat_n(label, n));
    }
    (patches, labels)
}

/// One training sample from an image (see the module documentation).
pub fn augment(pixels: &RgbImage, positive: bool, synthetic: bool, rng: &mut StdRng) -> RgbImage {
    let (w, h) = pixels.dimensions();
    let side = rng.random_range(CROP_SIDES.0..=CROP_SIDES.1).min(w).min(h);
    let x = rng.random_range(0..=(w - side) / 8) * 8;
    let y = rng.random_range(0..=(h - side) / 8) * 8;
    let mut image = imageops::crop_imm(pixels, x, y, side, side).to_image();
    if positive && rng.random_bool(0.7) {
        image = jpeg_round_trip(&image, rng.random_range(80..=97));
    }
    if synthetic {
        image = upsampled_like_a_generator(&image, rng);
    }
    if rng.random_bool(0.25) {
        let f = rng.random_range(0.5..0.9);
        let filter = [
            imageops::FilterType::Triangle,
            imageops::FilterType::CatmullRom,
            imageops::FilterType::Lanczos3,
        ][rng.random_range(0..3)];
        let (nw, nh) = ((image.width() as f64 * f) as u32, (image.height() as f64 * f) as u32);
        if nw >= PATCH as u32 && nh >= PATCH as u32 {
            image = imageops::resize(&image, nw, nh, filter);
        }
    }
    if rng.random_bool(0.5) {
        imageops::flip_horizontal_in_place(&mut image);
    }
    if rng.random_bool(0.85) {
        image = jpeg_round_trip(&image, rng.random_range(70..=98));
    }
    image
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
    /// Probability of "generated" from the model that did not see its group.
    pub score: f64,
}

/// The outcome of a grouped validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Validation {
    /// The groups held out together in each fold.
    pub folds: Vec<Vec<String>>,
    /// ROC AUC within each fold (both classes are in every fold when the groups allow).
    pub fold_auc: Vec<Option<f64>>,
    /// Every held-out prediction.
    pub held_out: Vec<HeldOut>,
    /// ROC AUC over all held-out predictions pooled (mixes the folds' models).
    pub auc: Option<f64>,
    /// Share of real images scored ≥ 0.5.
    pub false_positive_rate: f64,
    /// Share of generated images scored ≥ 0.5.
    pub true_positive_rate: f64,
}

/// Assign whole groups to `folds` folds so that each fold gets groups of both classes when it
/// can: the groups of each class, largest first, are dealt to the folds in turn.
pub fn group_folds(examples: &[Example], folds: usize) -> Vec<Vec<String>> {
    let folds = folds.max(2);
    let mut out = vec![Vec::new(); folds];
    for positive in [true, false] {
        let mut sizes: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for e in examples.iter().filter(|e| e.positive == positive) {
            *sizes.entry(e.group.as_str()).or_default() += 1;
        }
        let mut groups: Vec<(&str, usize)> = sizes.into_iter().collect();
        groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (i, (group, _)) in groups.into_iter().enumerate() {
            if !out.iter().any(|f| f.iter().any(|g| g == group)) {
                out[i % folds].push(group.to_string());
            }
        }
    }
    out.retain(|f| !f.is_empty());
    out
}

/// Hold out each fold's groups in turn: train on the other groups, score the held-out images
/// as `tellscan eval --normalize` prepares them.
pub fn grouped_validation(
    examples: &[Example],
    options: &TrainOptions,
    folds: &[Vec<String>],
) -> anyhow::Result<Validation> {
    let mut held_out = Vec::new();
    let mut fold_auc = Vec::new();
    for fold in folds {
        let held = |e: &Example| fold.contains(&e.group);
        let training: Vec<&Example> = examples.iter().filter(|e| !held(e)).collect();
        let testing: Vec<&Example> = examples.iter().filter(|e| held(e)).collect();
        tracing::info!(?fold, train = training.len(), test = testing.len(), "fold");
        let model = train(&training, options)?.model();
        let scores: Vec<Option<f64>> =
            testing.par_iter().map(|e| model.score(&normalised(&e.pixels))).collect();
        let mut this_fold = Vec::new();
        for (e, score) in testing.iter().zip(scores) {
            if let Some(score) = score {
                this_fold.push(HeldOut {
                    path: e.path.clone(),
                    group: e.group.clone(),
                    positive: e.positive,
                    score,
                });
            }
        }
        fold_auc.push(auc_of(&this_fold));
        held_out.extend(this_fold);
    }
    let rate = |positive: bool| {
        let of_class: Vec<_> = held_out.iter().filter(|h| h.positive == positive).collect();
        of_class.iter().filter(|h| h.score >= 0.5).count() as f64 / of_class.len().max(1) as f64
    };
    Ok(Validation {
        folds: folds.to_vec(),
        fold_auc,
        auc: auc_of(&held_out),
        false_positive_rate: rate(false),
        true_positive_rate: rate(true),
        held_out,
    })
}

fn auc_of(held: &[HeldOut]) -> Option<f64> {
    let scores: Vec<f64> = held.iter().map(|h| h.score).collect();
    let labels: Vec<bool> = held.iter().map(|h| h.positive).collect();
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
