//! Tiny latent autoencoders of the TAESD family (`madebyollin/taesd`, MIT) in candle, for
//! making aligned training pairs: a real photo and its round trip through a latent encoder and
//! decoder share content, size and format, so the only thing left to tell them apart is the
//! decoder's trace, the last stage almost every latent generator shares.
//!
//! The networks are plain sequences whose layer indices are the keys of the `.pth` state dicts
//! (`0.weight`, `1.conv.0.weight`, …):
//! - a **block** is conv3×3 → ReLU → conv3×3 → ReLU → conv3×3 added to its input, then ReLU;
//!   in the FLUX.2 variant the deepest blocks first add a per-pixel branch (1×1 conv to 4× the
//!   channels → GroupNorm(4) over the whole map → ReLU → 1×1 conv back) to their input;
//! - the **encoder** (8×): conv(3→64), block, then three stages of [stride-2 conv without bias,
//!   block ×3], conv(64→latent);
//! - the **decoder** (8×): soft clamp `tanh(x/3)·3`, conv(latent→64), ReLU, three stages of
//!   [block ×3, nearest ×2 up-sampling, conv without bias], block, conv(64→3).
//!
//! The latent channel count and the FLUX.2 branch are read from the files, so every 8× member
//! of the family loads (TAESD, TAESDXL, TAESD3, TAEF1, TAEF2). The Sana member (32×) is not
//! supported: its decoder is not available on these machines, so it cannot make a round trip.

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{conv2d, conv2d_no_bias, group_norm, Conv2d, Conv2dConfig, GroupNorm, VarBuilder};
use image::RgbImage;

/// Channels of every hidden layer.
const HIDDEN: usize = 64;
/// Total down-sampling of the encoder (and up-sampling of the decoder).
pub const SCALE: u32 = 8;
/// Where the weights are looked for by default (relative to the project root).
pub const DEFAULT_DIR: &str = "../shared/taesd";
/// The pair of files used for training pairs (FLUX.2 latents, 32 channels).
pub const ENCODER_FILE: &str = "taef2_encoder.pth";
/// See [`ENCODER_FILE`].
pub const DECODER_FILE: &str = "taef2_decoder.pth";

/// A 3×3 convolution with padding 1.
fn conv3(
    inputs: usize,
    outputs: usize,
    stride: usize,
    bias: bool,
    vb: VarBuilder,
) -> candle_core::Result<Conv2d> {
    let cfg = Conv2dConfig { padding: 1, stride, ..Default::default() };
    if bias {
        conv2d(inputs, outputs, 3, cfg, vb)
    } else {
        conv2d_no_bias(inputs, outputs, 3, cfg, vb)
    }
}

/// The FLUX.2 variant's per-pixel branch with a global GroupNorm.
#[derive(Debug, Clone)]
struct NormBranch {
    expand: Conv2d,
    norm: GroupNorm,
    shrink: Conv2d,
}

impl NormBranch {
    fn new(vb: VarBuilder) -> candle_core::Result<NormBranch> {
        let wide = HIDDEN * 4;
        let one = Conv2dConfig::default();
        Ok(NormBranch {
            expand: conv2d_no_bias(HIDDEN, wide, 1, one, vb.pp("0"))?,
            norm: group_norm(4, wide, 1e-5, vb.pp("1"))?,
            shrink: conv2d_no_bias(wide, HIDDEN, 1, one, vb.pp("3"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.norm.forward(&self.expand.forward(x)?)?.relu()?;
        self.shrink.forward(&y)
    }
}

/// A residual block of three 3×3 convolutions (64 → 64 channels).
#[derive(Debug, Clone)]
struct Block {
    convs: [Conv2d; 3],
    branch: Option<NormBranch>,
}

impl Block {
    fn new(vb: VarBuilder) -> candle_core::Result<Block> {
        let c = vb.pp("conv");
        let branch =
            if vb.contains_tensor("pool.0.weight") { Some(NormBranch::new(vb.pp("pool"))?) } else { None };
        Ok(Block {
            convs: [
                conv3(HIDDEN, HIDDEN, 1, true, c.pp("0"))?,
                conv3(HIDDEN, HIDDEN, 1, true, c.pp("2"))?,
                conv3(HIDDEN, HIDDEN, 1, true, c.pp("4"))?,
            ],
            branch,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = match &self.branch {
            Some(b) => (x + b.forward(x)?)?,
            None => x.clone(),
        };
        let y = self.convs[0].forward(&x)?.relu()?;
        let y = self.convs[1].forward(&y)?.relu()?;
        let y = self.convs[2].forward(&y)?;
        (y + x)?.relu()
    }
}

/// One layer of a sequence.
#[derive(Debug, Clone)]
enum Layer {
    Conv(Conv2d),
    Block(Box<Block>),
    Relu,
    SoftClamp,
    Upsample,
}

impl Layer {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Layer::Conv(c) => c.forward(x),
            Layer::Block(b) => b.forward(x),
            Layer::Relu => x.relu(),
            Layer::SoftClamp => (x / 3.0)?.tanh()? * 3.0,
            Layer::Upsample => {
                let (_, _, h, w) = x.dims4()?;
                x.upsample_nearest2d(h * 2, w * 2)
            }
        }
    }
}

/// What a layer of a sequence is, before its weights are loaded.
#[derive(Debug, Clone, Copy)]
enum Spec {
    /// 3×3 conv: inputs, outputs, stride, bias.
    Conv(usize, usize, usize, bool),
    Block,
    Relu,
    SoftClamp,
    Upsample,
}

fn build(specs: &[Spec], vb: &VarBuilder) -> candle_core::Result<Vec<Layer>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let vb = vb.pp(i.to_string());
            Ok(match *spec {
                Spec::Conv(inputs, outputs, stride, bias) => {
                    Layer::Conv(conv3(inputs, outputs, stride, bias, vb)?)
                }
                Spec::Block => Layer::Block(Box::new(Block::new(vb)?)),
                Spec::Relu => Layer::Relu,
                Spec::SoftClamp => Layer::SoftClamp,
                Spec::Upsample => Layer::Upsample,
            })
        })
        .collect()
}

fn run(layers: &[Layer], x: &Tensor) -> candle_core::Result<Tensor> {
    layers.iter().try_fold(x.clone(), |x, layer| layer.forward(&x))
}

fn encoder_specs(latent: usize) -> Vec<Spec> {
    let mut specs = vec![Spec::Conv(3, HIDDEN, 1, true), Spec::Block];
    for _ in 0..3 {
        specs.extend([Spec::Conv(HIDDEN, HIDDEN, 2, false), Spec::Block, Spec::Block, Spec::Block]);
    }
    specs.push(Spec::Conv(HIDDEN, latent, 1, true));
    specs
}

fn decoder_specs(latent: usize) -> Vec<Spec> {
    let mut specs = vec![Spec::SoftClamp, Spec::Conv(latent, HIDDEN, 1, true), Spec::Relu];
    for _ in 0..3 {
        specs.extend([
            Spec::Block,
            Spec::Block,
            Spec::Block,
            Spec::Upsample,
            Spec::Conv(HIDDEN, HIDDEN, 1, false),
        ]);
    }
    specs.extend([Spec::Block, Spec::Conv(HIDDEN, 3, 1, true)]);
    specs
}

/// The latent channel count a state dict implies: the output channels of the encoder's last
/// conv (key 14), or the input channels of the decoder's first conv (key 1).
fn latent_channels(path: &Path, key: &str, axis: usize) -> anyhow::Result<usize> {
    let tensors = candle_core::pickle::read_pth_tensor_info(path, false, None)
        .with_context(|| format!("{} is not a PyTorch state dict", path.display()))?;
    let info = tensors
        .iter()
        .find(|t| t.name == key)
        .with_context(|| format!("{} has no tensor {key}: not an 8× TAESD-family file", path.display()))?;
    info.layout
        .shape()
        .dims()
        .get(axis)
        .copied()
        .with_context(|| format!("{key} in {} is not a conv weight", path.display()))
}

/// A loaded encoder-decoder pair.
#[derive(Debug, Clone)]
pub struct Autoencoder {
    encoder: Vec<Layer>,
    decoder: Vec<Layer>,
    /// Latent channels.
    pub latent_channels: usize,
}

impl Autoencoder {
    /// Load the TAEF2 pair from `dir` (holding [`ENCODER_FILE`] and [`DECODER_FILE`]).
    pub fn load_dir(dir: &Path) -> anyhow::Result<Autoencoder> {
        Self::load(&dir.join(ENCODER_FILE), &dir.join(DECODER_FILE))
    }

    /// Load an encoder and a decoder of the 8× TAESD family from their `.pth` files.
    pub fn load(encoder: &Path, decoder: &Path) -> anyhow::Result<Autoencoder> {
        for path in [encoder, decoder] {
            anyhow::ensure!(path.is_file(), "the autoencoder file {} does not exist", path.display());
        }
        let latent = latent_channels(encoder, "14.weight", 0)?;
        let decoder_latent = latent_channels(decoder, "1.weight", 1)?;
        anyhow::ensure!(
            latent == decoder_latent,
            "{} makes {latent}-channel latents but {} reads {decoder_latent}",
            encoder.display(),
            decoder.display()
        );
        let device = Device::Cpu;
        let load = |path: &Path, specs: Vec<Spec>| -> anyhow::Result<Vec<Layer>> {
            let vb = VarBuilder::from_pth(path, DType::F32, &device)
                .with_context(|| format!("cannot read {}", path.display()))?;
            build(&specs, &vb).with_context(|| format!("{} does not match the TAESD layout", path.display()))
        };
        Ok(Autoencoder {
            encoder: load(encoder, encoder_specs(latent))?,
            decoder: load(decoder, decoder_specs(latent))?,
            latent_channels: latent,
        })
    }

    /// Encode and decode `image` (both sides are cut down to multiples of [`SCALE`], and a
    /// square of 64-512 px loses 8 px of width, see `square_map_of_hidden_side`).
    pub fn round_trip(&self, image: &RgbImage) -> anyhow::Result<RgbImage> {
        let (mut w, h) = (image.width() / SCALE * SCALE, image.height() / SCALE * SCALE);
        if square_map_of_hidden_side(w, h) {
            w -= SCALE;
        }
        anyhow::ensure!(w > 0 && h > 0, "an image must be at least {SCALE} px on a side to encode");
        let (wu, hu) = (w as usize, h as usize);
        let mut planar = vec![0f32; 3 * wu * hu];
        for (x, y, p) in image.enumerate_pixels().filter(|(x, y, _)| *x < w && *y < h) {
            for c in 0..3 {
                planar[c * wu * hu + y as usize * wu + x as usize] = f32::from(p[c]) / 255.0;
            }
        }
        let input = Tensor::from_vec(planar, (1, 3, hu, wu), &Device::Cpu)?;
        let latent = run(&self.encoder, &input)?;
        let output = run(&self.decoder, &latent)?.clamp(0f32, 1f32)?;
        let values = output.flatten_all()?.to_vec1::<f32>()?;
        Ok(RgbImage::from_fn(w, h, |x, y| {
            let at = |c: usize| (values[c * wu * hu + y as usize * wu + x as usize] * 255.0).round() as u8;
            image::Rgb([at(0), at(1), at(2)])
        }))
    }
}

/// Whether a `width`×`height` input gives a square feature map of [`HIDDEN`] px a side at some
/// scale. candle 0.9.2's CPU convolution takes a contiguous NCHW input whose channel count equals
/// its height and width for an NHWC one and returns garbage there (a 256 px square photo came
/// back as noise, 9 dB), so such inputs lose one column of latents.
fn square_map_of_hidden_side(width: u32, height: u32) -> bool {
    width == height && (0..=3).any(|k| width == (HIDDEN as u32) << k)
}

/// Peak signal-to-noise ratio in dB between two images over their common top-left area
/// (infinite when they are equal there).
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let (w, h) = (a.width().min(b.width()), a.height().min(b.height()));
    let mut sum = 0f64;
    for y in 0..h {
        for x in 0..w {
            let (p, q) = (a.get_pixel(x, y), b.get_pixel(x, y));
            for c in 0..3 {
                let d = f64::from(p[c]) - f64::from(q[c]);
                sum += d * d;
            }
        }
    }
    let mse = sum / (f64::from(w) * f64::from(h) * 3.0).max(1.0);
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// The autoencoder folder: `TELLSCAN_TAESD` when set, else [`DEFAULT_DIR`].
pub fn default_dir() -> PathBuf {
    std::env::var_os("TELLSCAN_TAESD").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layouts_match_the_upstream_indices() {
        // upstream: the encoder's last conv is layer 14, the decoder's first conv layer 1 and
        // its last layer 19
        let e = encoder_specs(32);
        assert_eq!(e.len(), 15);
        assert!(matches!(e[14], Spec::Conv(64, 32, 1, true)));
        assert!(matches!(e[2], Spec::Conv(64, 64, 2, false)));
        let d = decoder_specs(32);
        assert_eq!(d.len(), 20);
        assert!(matches!(d[1], Spec::Conv(32, 64, 1, true)));
        assert!(matches!(d[6], Spec::Upsample) && matches!(d[7], Spec::Conv(64, 64, 1, false)));
        assert!(matches!(d[19], Spec::Conv(64, 3, 1, true)));
    }

    #[test]
    fn squares_that_would_meet_the_candle_layout_bug_are_recognised() {
        for side in [64, 128, 256, 512] {
            assert!(square_map_of_hidden_side(side, side));
        }
        assert!(!square_map_of_hidden_side(256, 248));
        assert!(!square_map_of_hidden_side(384, 384));
        assert!(!square_map_of_hidden_side(1024, 1024));
    }

    #[test]
    fn psnr_of_equal_and_offset_images() {
        let a = RgbImage::from_pixel(4, 4, image::Rgb([10, 20, 30]));
        assert!(psnr(&a, &a).is_infinite());
        let b = RgbImage::from_pixel(4, 4, image::Rgb([11, 21, 31]));
        assert!((psnr(&a, &b) - 48.13).abs() < 0.01);
    }
}
