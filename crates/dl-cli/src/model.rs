//! A trainable network (dl-models' [`Network`]) with its name and configuration: turning a
//! batch of normalised digits into each one's input, stepping, saving and loading.
//!
//! Inputs (each from the same normalised 28x28 digit):
//! - `mlp`, `scratch`: the 784 values in a row.
//! - `cnn`: one 28x28 channel.
//! - `image-cnn`: 3x64x64, the digit upscaled by nearest neighbour (pixel `(y, x)` of the
//!   output is pixel `(y * 28 / 64, x * 28 / 64)` of the digit) and repeated in the three
//!   colour channels.
//! - `lstm`: 28 time steps (rows) of 28 features (the row's pixels).
//! - `transformer`: 16 tokens, one per 7x7 patch in row-major patch order, each the patch's 49
//!   values in row-major order, read through the linear patch embedding.
//! - `forecast` (not a digit model): `window` time steps of one scaled CO2 value each,
//!   relative to the window's last week; the output is the scaled change to next week
//!   (`data/series.rs`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use dl_io::{CheckpointMeta, LoadMode, OnnxExportOptions, StateDict};
use dl_models::{
    DIGIT_CLASSES, DIGIT_SIDE, IMAGE_CNN_SIDE, ModelConfig, Network, PATCH_SIDE, ScratchMlp,
    TransformerInput, map_network, with_network,
};
use dl_optim::GradClip;

use crate::config::ModelKind;

/// A network with the name of the model it is and its configuration.
#[derive(Debug, Clone)]
pub struct DigitModel {
    /// Which model.
    pub kind: ModelKind,
    /// Its configuration (the dl-models `XConfig` as JSON), as checkpoints record it.
    pub config: serde_json::Value,
    /// The network.
    pub net: Network,
}

impl DigitModel {
    /// Build `kind` from its configuration on `device` (seed the device first).
    pub fn build(kind: ModelKind, config: serde_json::Value, device: &Device) -> Result<Self> {
        let net = ModelConfig::from_json(kind, &config)?.init(device)?;
        Ok(Self { kind, config, net })
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.net.num_params()
    }

    /// The same network for inference (dropout off, no autodiff).
    pub fn valid(&self) -> Self {
        Self {
            kind: self.kind,
            config: self.config.clone(),
            net: self.net.valid(),
        }
    }

    /// Logits `[n, 10]` of `n` normalised digits (`images` holds `n * 784` values).
    pub fn logits(&self, images: &[f32], n: usize, device: &Device) -> Result<Tensor<2>> {
        let flat = || tensor2(images, n, device);
        let logits = match &self.net {
            Network::Mlp(m) => m.try_forward(flat())?,
            Network::Scratch(m) => m.try_logits(flat())?,
            Network::Cnn(m) if self.kind == ModelKind::ImageCnn => {
                m.try_forward(image_cnn_input(images, n, device))?
            }
            Network::Cnn(m) => m.try_forward(flat().reshape([n, 1, DIGIT_SIDE, DIGIT_SIDE]))?,
            Network::Lstm(m) => m.try_forward(flat().reshape([n, DIGIT_SIDE, DIGIT_SIDE]))?,
            Network::Transformer(m) => m.try_forward(TransformerInput::Patches(patches(flat())))?,
            Network::Forecast(_) => bail!(
                "the `forecast` model predicts CO2 values, not digit classes: expected a digit model"
            ),
        };
        if logits.dims() != [n, DIGIT_CLASSES] {
            bail!(
                "the `{}` model gives logits of shape {:?}, expected [{n}, {DIGIT_CLASSES}] (one per digit class)",
                self.kind.name(),
                logits.dims()
            );
        }
        Ok(logits)
    }

    /// Next-week predictions `[n, 1]` (scaled change from the window's last week) of `n`
    /// windows of `window` scaled weeks relative to their last (`windows` holds `n * window`
    /// values, window after window); `forecast` only.
    pub fn forecast(
        &self,
        windows: &[f32],
        n: usize,
        window: usize,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let Network::Forecast(m) = &self.net else {
            bail!(
                "the `{}` model classifies digits: expected a `forecast` checkpoint",
                self.kind.name()
            );
        };
        if windows.len() != n * window {
            bail!(
                "internal: {} window values for {n} windows of {window} weeks",
                windows.len()
            );
        }
        let x = Tensor::<3>::from_data(TensorData::new(windows.to_vec(), [n, window, 1]), device);
        let out = m.try_forward(x)?;
        if out.dims() != [n, 1] {
            bail!(
                "the `forecast` model gives predictions of shape {:?}, expected [{n}, 1] (next week's value)",
                out.dims()
            );
        }
        Ok(out)
    }

    /// Logits and every layer's attention weights `[n, heads, 16, 16]` (Transformer only).
    pub fn attention(
        &self,
        images: &[f32],
        n: usize,
        device: &Device,
    ) -> Result<(Tensor<2>, Vec<Tensor<4>>)> {
        match &self.net {
            Network::Transformer(m) => Ok(m.try_forward_with_attention(
                TransformerInput::Patches(patches(tensor2(images, n, device))),
            )?),
            _ => bail!(
                "attention maps need a transformer checkpoint, this one holds `{}`",
                self.kind.name()
            ),
        }
    }

    /// One optimizer step from `loss` (an autodiff network): gradients, optional clipping,
    /// update.
    pub fn step(
        self,
        loss: Tensor<1>,
        optimizer: &mut ModuleOptimizer,
        lr: f64,
        clip: Option<GradClip>,
    ) -> Result<Self> {
        let grads = loss.backward();
        let net = match self.net {
            Network::Scratch(_) => bail!("the scratch network trains with its own backward pass"),
            net => map_network!(net, m => {
                let mut params = GradientsParams::from_grads(grads, &m);
                if let Some(clip) = clip {
                    params = clip.apply(&m, params)?.0;
                }
                optimizer.step(lr, m, params)
            }),
        };
        Ok(Self { net, ..self })
    }

    /// Write a checkpoint (atomically).
    pub fn save(
        &self,
        path: &Path,
        optimizer: Option<&ModuleOptimizer>,
        meta: &CheckpointMeta,
    ) -> Result<()> {
        with_network!(&self.net, m => dl_io::save_checkpoint(path, m, optimizer, meta))
            .with_context(|| format!("writing checkpoint {}", path.display()))
    }

    /// Read a checkpoint written by `dl train`: rebuild its model on `device` and load the
    /// weights (and the optimizer state into `optimizer`, when given).
    pub fn load(
        path: &Path,
        device: &Device,
        optimizer: Option<ModuleOptimizer>,
    ) -> Result<(Self, Option<ModuleOptimizer>, CheckpointMeta)> {
        let meta = dl_io::read_checkpoint_meta(path)
            .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        let kind = meta
            .model
            .parse::<ModelKind>()
            .with_context(|| format!("checkpoint {}", path.display()))?;
        // Checked before anything is allocated: the configuration fits the digits and
        // describes no more parameters than the file's weights hold.
        let config = ModelConfig::from_json(kind, &meta.model_config)
            .map_err(anyhow::Error::from)
            .and_then(|config| {
                crate::model_checks::check_checkpoint(path, kind, &config)?;
                Ok(config)
            })
            .with_context(|| format!("checkpoint {}", path.display()))?;
        let fresh = Self {
            kind,
            config: meta.model_config.clone(),
            net: config
                .init(device)
                .with_context(|| format!("checkpoint {}", path.display()))?,
        };
        let context = || format!("cannot load checkpoint {}", path.display());
        let optimizer_out;
        let net = map_network!(fresh.net, m => {
            let loaded = dl_io::load_checkpoint(path, m, optimizer).with_context(context)?;
            optimizer_out = loaded.optimizer;
            loaded.model
        });
        Ok((
            Self {
                kind,
                config: meta.model_config.clone(),
                net,
            },
            optimizer_out,
            meta,
        ))
    }

    /// Load a PyTorch state dict (read from a `.pt`, `.pth`, `.safetensors` or ONNX file)
    /// into this network, strictly.
    pub fn load_state_dict(self, state: &StateDict) -> Result<Self> {
        let context = || format!("cannot load weights from {}", state.source());
        let net = map_network!(self.net, m => dl_io::load_pytorch_state_dict(m, state, LoadMode::Strict).with_context(context)?.0);
        Ok(Self { net, ..self })
    }

    /// Export as a PyTorch state dict in safetensors.
    pub fn export_safetensors(&self, path: &Path) -> Result<()> {
        with_network!(&self.net, m => dl_io::to_pytorch_state_dict(m).write_safetensors(path))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Export as a PyTorch checkpoint (`torch.save` zip format), PyTorch names and layout.
    pub fn export_pytorch(&self, path: &Path) -> Result<()> {
        with_network!(&self.net, m => dl_io::to_pytorch_state_dict(m).write_pytorch(path))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Export as ONNX.
    pub fn export_onnx(&self, path: &Path) -> Result<()> {
        with_network!(&self.net, m => dl_io::export_onnx(m, path, &OnnxExportOptions::new()))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The scratch network, for its own training loop.
    pub fn as_scratch_mut(&mut self) -> Option<&mut ScratchMlp> {
        match &mut self.net {
            Network::Scratch(m) => Some(m),
            _ => None,
        }
    }
}

/// `[n, 784]` from row-major values.
pub(crate) fn tensor2(images: &[f32], n: usize, device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(
        TensorData::new(images.to_vec(), [n, DIGIT_SIDE * DIGIT_SIDE]),
        device,
    )
}

/// Labels as an integer tensor.
pub fn label_tensor(labels: &[i64], device: &Device) -> Tensor<1, Int> {
    Tensor::<1, Int>::from_ints(labels, device)
}

/// `[n, 784]` digits to `[n, 16, 49]`: 7x7 patches in row-major order.
fn patches(flat: Tensor<2>) -> Tensor<3> {
    let n = flat.dims()[0];
    let per_side = DIGIT_SIDE / PATCH_SIDE;
    flat.reshape([n, per_side, PATCH_SIDE, per_side, PATCH_SIDE])
        .swap_dims(2, 3)
        .reshape([n, per_side * per_side, PATCH_SIDE * PATCH_SIDE])
}

/// `[n, 3, 64, 64]`: each digit upscaled by nearest neighbour and repeated in three channels.
fn image_cnn_input(images: &[f32], n: usize, device: &Device) -> Tensor<4> {
    let side = IMAGE_CNN_SIDE;
    let mut out = Vec::with_capacity(n * 3 * side * side);
    for image in images.chunks(DIGIT_SIDE * DIGIT_SIDE).take(n) {
        let mut plane = Vec::with_capacity(side * side);
        for y in 0..side {
            let row = &image[(y * DIGIT_SIDE / side) * DIGIT_SIDE..][..DIGIT_SIDE];
            plane.extend((0..side).map(|x| row[x * DIGIT_SIDE / side]));
        }
        for _ in 0..3 {
            out.extend_from_slice(&plane);
        }
    }
    Tensor::<4>::from_data(TensorData::new(out, [n, 3, side, side]), device)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn patches_are_row_major_7x7_blocks() {
        let device = dl_core::BackendKind::Flex.device().unwrap();
        let values: Vec<f32> = (0..784).map(|i| i as f32).collect();
        let p = patches(tensor2(&values, 1, &device));
        assert_eq!(p.dims(), [1, 16, 49]);
        let data: Vec<f32> = p.into_data().try_to_vec::<f32>().unwrap();
        // Patch 1 (top row, second column) starts at pixel (0, 7); its second row at (1, 7).
        assert_eq!(data[49], 7.0);
        assert_eq!(data[49 + 7], 28.0 + 7.0);
        // Patch 4 (second row of patches) starts at pixel (7, 0).
        assert_eq!(data[4 * 49], (7 * 28) as f32);
    }

    #[test]
    fn image_cnn_input_upscales_and_replicates() {
        let device = dl_core::BackendKind::Flex.device().unwrap();
        let values: Vec<f32> = (0..784).map(|i| i as f32).collect();
        let t = image_cnn_input(&values, 1, &device);
        assert_eq!(t.dims(), [1, 3, 64, 64]);
        let data: Vec<f32> = t.into_data().try_to_vec::<f32>().unwrap();
        // Output (63, 63) is digit pixel (27, 27); every channel is the same.
        assert_eq!(data[63 * 64 + 63], 783.0);
        assert_eq!(data[2 * 4096 + 63 * 64 + 63], 783.0);
        // Output (1, 3) is digit pixel (0, 1).
        assert_eq!(data[64 + 3], 1.0);
    }
}
