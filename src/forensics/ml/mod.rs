//! The `ml` module: a small CNN (candle) over noise-residual patches of the picture at half
//! resolution (native when it is small), its score the probability from the mean logit of
//! the patches.
//!
//! The weights (`weights/detector.safetensors`) are trained by `tellscan train`
//! (`crate::learn::train`, which this module knows nothing of) and loaded once at start-up; a missing file or one that does not match the
//! architecture is an error that says which, never a silent fallback.

pub mod net;
pub mod patches;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;

use self::net::{parameter_shapes, Net, CHANNELS, PATCH};
use super::evidence::sigmoid;
use super::report::ModuleReport;
use super::views::Views;

/// Where the weights are looked for unless configured otherwise (relative to the working
/// directory).
pub const DEFAULT_WEIGHTS: &str = "weights/detector.safetensors";
/// Patches scored per image.
pub const INFERENCE_PATCHES: usize = 16;

/// Why weights could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// No file there.
    #[error(
        "the ML weights file {0} does not exist: check detector.weights (TELLSCAN_DETECTOR__WEIGHTS \
         or --weights), leave it unset to use the weights built into the binary, or train one with \
         `tellscan train`"
    )]
    Missing(PathBuf),
    /// The file could not be read.
    #[error("cannot read the ML weights file {path}: {detail}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        detail: String,
    },
    /// Not a safetensors file, or truncated.
    #[error("the ML weights file {path} is not a valid safetensors file (truncated or corrupt?): {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// A safetensors file, but not for this network.
    #[error("the ML weights file {path} does not match the network: {detail}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Which tensor is missing, extra or of the wrong shape or type.
        detail: String,
    },
}

/// The loaded network.
#[derive(Debug, Clone)]
pub struct MlModel {
    net: Net,
}

impl MlModel {
    /// Load weights from a safetensors file, checking every tensor against the architecture.
    pub fn load(path: &Path) -> Result<MlModel, WeightsError> {
        Self::from_bytes(&Self::read(path)?, path)
    }

    /// The bytes of a weights file, with the errors [`MlModel::load`] gives.
    pub fn read(path: &Path) -> Result<Vec<u8>, WeightsError> {
        std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => WeightsError::Missing(path.to_path_buf()),
            _ => WeightsError::Unreadable { path: path.to_path_buf(), detail: e.to_string() },
        })
    }

    /// Load weights from the bytes of a safetensors file (`path` names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<MlModel, WeightsError> {
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load_buffer(bytes, &device)
            .map_err(|e| WeightsError::Corrupt { path: path.to_path_buf(), detail: e.to_string() })?;
        let mismatch = |detail: String| WeightsError::Mismatch { path: path.to_path_buf(), detail };
        let expected = parameter_shapes();
        for (name, shape) in &expected {
            let tensor = tensors.get(name).ok_or_else(|| mismatch(format!("tensor {name} is missing")))?;
            if tensor.dims() != shape.as_slice() {
                return Err(mismatch(format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    tensor.dims()
                )));
            }
            if tensor.dtype() != DType::F32 {
                return Err(mismatch(format!("tensor {name} is {:?}, expected f32", tensor.dtype())));
            }
        }
        if let Some(extra) = tensors.keys().find(|k| !expected.iter().any(|(name, _)| name == *k)) {
            return Err(mismatch(format!("unexpected tensor {extra} (another architecture?)")));
        }
        let net = Net::new(VarBuilder::from_tensors(tensors, DType::F32, &device))
            .map_err(|e| mismatch(e.to_string()))?;
        Ok(MlModel { net })
    }

    /// Wrap a network (fresh from training).
    pub fn from_net(net: Net) -> MlModel {
        MlModel { net }
    }

    /// Logits of the patches of `image` at `corners`, the image read as given: pass it through
    /// [`patches::network_view`] first to score as [`MlModel::score`] does.
    pub fn logits(&self, image: &RgbImage, corners: &[(usize, usize)]) -> candle_core::Result<Vec<f32>> {
        if corners.is_empty() {
            return Ok(Vec::new());
        }
        let data = patches::residual_patches(image, corners);
        let input = Tensor::from_vec(data, (corners.len(), CHANNELS, PATCH, PATCH), &Device::Cpu)?;
        self.net.forward(&input)?.to_vec1::<f32>()
    }

    /// Probability that `image` is generated (sigmoid of the mean patch logit); `None` when it
    /// is smaller than a patch.
    pub fn score(&self, image: &RgbImage) -> Option<f64> {
        let (_, logits) = self.patch_logits(image);
        mean(&logits.ok()?).map(sigmoid)
    }

    /// The logits of the [`INFERENCE_PATCHES`] patches of the picture the network reads
    /// ([`patches::network_view`]), and whether that picture is `image` halved; no logits when
    /// it is smaller than a patch.
    fn patch_logits(&self, image: &RgbImage) -> (bool, candle_core::Result<Vec<f32>>) {
        let view = patches::network_view(image);
        let corners = patches::select(&view, INFERENCE_PATCHES);
        (matches!(view, std::borrow::Cow::Owned(_)), self.logits(&view, &corners))
    }

    /// The module report for an image's views.
    pub fn analyse(&self, views: &Views) -> ModuleReport {
        let (halved, logits) = self.patch_logits(&views.image);
        let logits = match logits {
            Ok(l) => l,
            Err(e) => return ModuleReport::abstain(format!("the network failed: {e}")),
        };
        let Some(mean_logit) = mean(&logits) else {
            return ModuleReport::abstain(format!("the image is smaller than one {PATCH}×{PATCH} patch"));
        };
        let score = sigmoid(mean_logit);
        let resolution = if halved { "half" } else { "native" };
        let generated_like = logits.iter().filter(|&&l| l > 0.0).count();
        ModuleReport {
            score,
            abstained: false,
            flags: vec![],
            explanations: vec![format!(
                "a CNN over {} residual patches at {resolution} resolution finds {} of them \
                 generated-like (probability {:.2})",
                logits.len(),
                generated_like,
                score
            )],
            elapsed_ms: 0.0,
        }
    }
}

fn mean(values: &[f32]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64)
}
