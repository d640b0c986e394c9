//! The network: a small CNN over noise-residual patches, one logit per patch.
//!
//! Four 3×3 convolutions (16, 32, 64, 64 channels; the first three with stride 2), ReLU after
//! each, global average pooling and one linear unit: 60,577 parameters. It sees the residual
//! (what the 3×3 neighbourhood mean does not explain), where up-sampling and demosaicing
//! traces live: trained on patches at native resolution, it reads the picture halved at
//! inference ([`super::patches::network_view`]).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{conv2d, linear, Conv2d, Conv2dConfig, Linear, VarBuilder};

/// Side of the square patches the network reads.
pub const PATCH: usize = 64;
/// Channels of a patch (the residual of R, G and B).
pub const CHANNELS: usize = 3;

/// Output channels of each convolution and its stride.
const LAYERS: [(usize, usize); 4] = [(16, 2), (32, 2), (64, 2), (64, 1)];

/// The CNN.
#[derive(Debug, Clone)]
pub struct Net {
    convs: Vec<Conv2d>,
    head: Linear,
}

impl Net {
    /// Build the network over `vb`: fresh variables for training (a `VarMap`), or loaded
    /// tensors for inference. Names: `conv{i}.weight`, `conv{i}.bias`, `head.weight`,
    /// `head.bias`.
    pub fn new(vb: VarBuilder) -> Result<Net> {
        let mut convs = Vec::with_capacity(LAYERS.len());
        let mut inputs = CHANNELS;
        for (i, &(outputs, stride)) in LAYERS.iter().enumerate() {
            let cfg = Conv2dConfig { padding: 1, stride, ..Default::default() };
            convs.push(conv2d(inputs, outputs, 3, cfg, vb.pp(format!("conv{i}")))?);
            inputs = outputs;
        }
        let head = linear(inputs, 1, vb.pp("head"))?;
        Ok(Net { convs, head })
    }

    /// Logits of a batch of patches `(n, CHANNELS, PATCH, PATCH)`, shape `(n,)`.
    pub fn forward(&self, patches: &Tensor) -> Result<Tensor> {
        let mut x = patches.clone();
        for conv in &self.convs {
            x = conv.forward(&x)?.relu()?;
        }
        let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?;
        self.head.forward(&pooled)?.squeeze(D::Minus1)
    }
}

/// Names and shapes of every parameter, in a fixed order (for initialisation and checks).
pub fn parameter_shapes() -> Vec<(String, Vec<usize>)> {
    let mut shapes = Vec::new();
    let mut inputs = CHANNELS;
    for (i, &(outputs, _)) in LAYERS.iter().enumerate() {
        shapes.push((format!("conv{i}.weight"), vec![outputs, inputs, 3, 3]));
        shapes.push((format!("conv{i}.bias"), vec![outputs]));
        inputs = outputs;
    }
    shapes.push(("head.weight".to_string(), vec![1, inputs]));
    shapes.push(("head.bias".to_string(), vec![1]));
    shapes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_count_is_small() {
        let n: usize = parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(n, 60_577);
    }
}
