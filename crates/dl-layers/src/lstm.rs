//! A multi-layer, optionally bidirectional LSTM with PyTorch's packed parameters.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use dl_core::{Error, Result, validate};

use crate::dropout::dropout_forward;
use crate::linear::linear;

/// The recurrent state `(h, c)`, each `[num_layers · num_directions, batch, hidden_size]`,
/// ordered as PyTorch orders it: layer 0 forward, layer 0 reverse, layer 1 forward, ...
pub type LstmState = (Tensor<3>, Tensor<3>);

/// Configuration of an [`Lstm`] (the arguments of `torch.nn.LSTM`, with its defaults).
#[derive(Config, Debug)]
pub struct LstmConfig {
    /// Features per time step of the input.
    pub input_size: usize,
    /// Features of the hidden state `H`.
    pub hidden_size: usize,
    /// Number of stacked layers (PyTorch: 1).
    #[config(default = 1)]
    pub num_layers: usize,
    /// Whether the layers have the biases `b_ih` and `b_hh` (PyTorch: yes).
    #[config(default = true)]
    pub bias: bool,
    /// `true`: input and output are `[batch, time, features]`; `false` (PyTorch's default):
    /// `[time, batch, features]`. The state is `[layers · directions, batch, H]` either way.
    #[config(default = false)]
    pub batch_first: bool,
    /// Dropout on the outputs of every layer but the last, in training only (PyTorch: 0).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Whether each layer also runs backwards in time (PyTorch: no).
    #[config(default = false)]
    pub bidirectional: bool,
}

/// The parameters of one layer in one direction, in PyTorch's layout and gate order
/// `(i, f, g, o)` (input, forget, cell candidate, output) along the `4H` axis.
#[derive(Module, Debug)]
pub struct LstmLayer {
    /// `W_ih`, `[4H, input features of this layer]` (PyTorch layout, not transposed).
    pub weight_ih: Param<Tensor<2>>,
    /// `W_hh`, `[4H, H]`.
    pub weight_hh: Param<Tensor<2>>,
    /// `b_ih`, `[4H]`.
    pub bias_ih: Option<Param<Tensor<1>>>,
    /// `b_hh`, `[4H]`.
    pub bias_hh: Option<Param<Tensor<1>>>,
}

/// `torch.nn.LSTM`: stacked, optionally bidirectional long short-term memory.
///
/// For each layer and direction, with `σ` the logistic function and `⊙` the element-wise
/// product:
///
/// ```text
/// (i, f, g, o) = split₄(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh)
/// c_t = σ(f) ⊙ c_{t−1} + σ(i) ⊙ tanh(g)
/// h_t = σ(o) ⊙ tanh(c_t)
/// ```
///
/// Layer `k > 0` reads the outputs of layer `k − 1` (both directions concatenated, forward
/// first), after dropout in training. `proj_size` is not supported.
///
/// # PyTorch keys
///
/// [`Lstm::layers`] holds the forward direction's [`LstmLayer`] of every layer and
/// [`Lstm::reverse_layers`] the backward direction's (empty unless bidirectional), so a
/// parameter's PyTorch key follows from its module path alone ([`crate::PytorchPath`]);
/// `D` = 1 or 2 directions:
///
/// | key | shape | here |
/// |---|---|---|
/// | `weight_ih_l{k}` | `[4H, in]` (`in` = `input_size` for k = 0, else `D·H`) | `layers[k].weight_ih` |
/// | `weight_hh_l{k}` | `[4H, H]` | `layers[k].weight_hh` |
/// | `bias_ih_l{k}`, `bias_hh_l{k}` | `[4H]` | `layers[k].bias_ih`, `.bias_hh` |
/// | `..._l{k}_reverse` | as above | `reverse_layers[k]...` |
///
/// All are stored exactly in PyTorch's layout (no transposition).
///
/// # Initialisation
///
/// PyTorch's: every weight and bias from `U(−1/√H, 1/√H)`.
///
/// # Training and dropout
///
/// The inter-layer dropout is a Burn [`Dropout`]: active only when the input is on an autodiff
/// device and the dropout's training flag is on (Burn 0.22's rule, `burn-nn` `dropout.rs`);
/// [`crate::set_training`]`(lstm, false)` is PyTorch's `lstm.eval()`.
///
/// # Cost per time step
///
/// On Flex (with or without autodiff) the recurrence of each layer and direction is one fused
/// operation, `dl_kernels::lstm_recurrence`: per step one `[B, H] × [H, 4H]` product and one
/// vectorised loop for the gates and the cell update, and under autodiff a hand-written
/// backpropagation through time (see that crate). On LibTorch (feature `tch`) each layer, both
/// directions, is one call of LibTorch's own `at::lstm` (`dl_kernels::torch_lstm`: oneDNN's
/// LSTM on the CPU, cuDNN's on CUDA, as in PyTorch), differentiated by LibTorch's autograd. On
/// the other backends, and with [`Lstm::fused`] off, the recurrence is composed of tensor
/// operations as follows.
///
/// The input projection of all time steps is **one** matrix product per layer and direction,
/// `[T·B, in] × [in, 4H]`, with `b_ih + b_hh` added once; the weights are transposed once per
/// forward pass. The projection is cut into its `T` step views once, before the loop. Each step
/// then does one `[B, H] × [H, 4H]` product, a sigmoid over the `i`, `f` and `o` quarters and a
/// tanh over the `g` quarter (the gates are views into the `4H` axis, so no transcendental
/// function runs on a value that is not used), and the element-wise cell update. Step outputs
/// are collected in a `Vec` and stacked once at the end — no `slice_assign` in the time loop.
///
/// Under autodiff, Burn 0.22 differentiates a slice by writing its gradient into a zero tensor
/// the size of the sliced tensor. Cutting `T` single steps straight out of the projection would
/// make the backward pass `O(T² · B · 4H)` (measured: 2 layers, B = 32, H = 64, T = 200 on Flex,
/// forward + backward 1.1 s); the projection is therefore cut by recursive halving, which costs
/// `O(T log T · B · 4H)` (same case: 0.22 s, against 0.08 s for the forward pass alone).
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_layers::LstmConfig;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let lstm = LstmConfig::new(10, 16)
///     .with_num_layers(2)
///     .with_batch_first(true)
///     .with_bidirectional(true)
///     .init(&device)?;
/// let x = Tensor::<3>::zeros([4, 7, 10], &device); // [batch, time, features]
/// let (out, (h_n, c_n)) = lstm.forward(x, None);
/// assert_eq!(out.dims(), [4, 7, 32]);
/// assert_eq!(h_n.dims(), [4, 4, 16]);
/// assert_eq!(c_n.dims(), [4, 4, 16]);
/// assert_eq!(lstm.reverse_layers.len(), 2);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct Lstm {
    /// The forward direction of each layer: PyTorch's `..._l0`, `..._l1`, ...
    pub layers: Vec<LstmLayer>,
    /// The backward direction of each layer when bidirectional (`..._l0_reverse`, ...), else
    /// empty.
    pub reverse_layers: Vec<LstmLayer>,
    /// Dropout between layers (training only).
    pub dropout: Dropout,
    /// Features per time step of the input.
    pub input_size: usize,
    /// Features of the hidden state.
    pub hidden_size: usize,
    /// Number of stacked layers.
    pub num_layers: usize,
    /// Whether input and output are `[batch, time, features]`.
    pub batch_first: bool,
    /// Whether each layer also runs backwards in time.
    pub bidirectional: bool,
    /// Whether the recurrence uses the fused kernel of `dl-kernels` where the device has one
    /// (Flex, and LibTorch's own LSTM with the `tch` feature; `true` after
    /// [`LstmConfig::init`]). `false` forces the composed tensor-operation
    /// path on every backend, like `torch.backends.cudnn.enabled = False` does for cuDNN; the
    /// two agree within f32 rounding (tested below).
    pub fused: bool,
}

impl LstmConfig {
    /// Build the LSTM with PyTorch's initialisation.
    ///
    /// Fails when a size is 0 or `dropout` is not in `[0, 1)`.
    pub fn init(&self, device: &Device) -> Result<Lstm> {
        validate::positive("lstm input_size", self.input_size)?;
        validate::positive("lstm hidden_size", self.hidden_size)?;
        validate::positive("lstm num_layers", self.num_layers)?;
        validate::probability("lstm dropout", self.dropout)?;
        let h = self.hidden_size;
        let k = 1.0 / (h as f64).sqrt();
        let init = Initializer::Uniform { min: -k, max: k };
        let directions = if self.bidirectional { 2 } else { 1 };
        let mut layers = Vec::with_capacity(self.num_layers);
        let mut reverse_layers = Vec::new();
        for layer in 0..self.num_layers {
            let d_in = if layer == 0 {
                self.input_size
            } else {
                h * directions
            };
            // PyTorch draws l{k} before l{k}_reverse.
            for direction in 0..directions {
                let bias = || self.bias.then(|| init.init([4 * h], device));
                let params = LstmLayer {
                    weight_ih: init.init([4 * h, d_in], device),
                    weight_hh: init.init([4 * h, h], device),
                    bias_ih: bias(),
                    bias_hh: bias(),
                };
                if direction == 0 {
                    layers.push(params);
                } else {
                    reverse_layers.push(params);
                }
            }
        }
        Ok(Lstm {
            layers,
            reverse_layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            input_size: self.input_size,
            hidden_size: h,
            num_layers: self.num_layers,
            batch_first: self.batch_first,
            bidirectional: self.bidirectional,
            fused: true,
        })
    }
}

impl LstmLayer {
    /// `b_ih + b_hh`, added once to the projected input of all time steps.
    fn folded_bias(&self) -> Option<Tensor<1>> {
        match (&self.bias_ih, &self.bias_hh) {
            (Some(a), Some(b)) => Some(a.val() + b.val()),
            (Some(a), None) => Some(a.val()),
            (None, Some(b)) => Some(b.val()),
            (None, None) => None,
        }
    }
}

impl Lstm {
    /// 2 when bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Features per time step of the output, `H · directions`.
    pub fn output_size(&self) -> usize {
        self.hidden_size * self.num_directions()
    }

    /// The parameters of one layer in one direction (`reverse`: the backward one).
    ///
    /// # Panics
    ///
    /// When there is no such layer (`layer >= num_layers`, or `reverse` on a unidirectional
    /// LSTM).
    pub fn layer(&self, layer: usize, reverse: bool) -> &LstmLayer {
        if reverse {
            &self.reverse_layers[layer]
        } else {
            &self.layers[layer]
        }
    }

    fn time_dim(&self) -> usize {
        if self.batch_first { 1 } else { 0 }
    }

    /// Run over a whole sequence.
    ///
    /// * `x`: `[T, B, input_size]`, or `[B, T, input_size]` when `batch_first`.
    /// * `state`: `(h_0, c_0)`, each `[num_layers · directions, B, H]`; zeros when `None`.
    ///
    /// Returns `(output, (h_n, c_n))` as PyTorch does: `output` is `[T, B, directions · H]`
    /// (or `[B, T, directions · H]`), the last layer's hidden state at every step, with the
    /// forward direction in the first `H` features; `h_n` and `c_n` are the final states of
    /// every layer and direction (for the reverse direction, after it has reached `t = 0`).
    ///
    /// # Panics
    ///
    /// On the inputs [`Lstm::try_forward`] rejects.
    pub fn forward(&self, x: Tensor<3>, state: Option<LstmState>) -> (Tensor<3>, LstmState) {
        validate::or_panic(self.try_forward(x, state))
    }

    /// [`Lstm::forward`], failing when `x` does not have `input_size` features, has no time
    /// steps or no batch, or when the state has the wrong shape.
    pub fn try_forward(
        &self,
        x: Tensor<3>,
        state: Option<LstmState>,
    ) -> Result<(Tensor<3>, LstmState)> {
        let dims = x.dims();
        validate::last_dim("lstm input", &dims, self.input_size)?;
        let time_dim = self.time_dim();
        let (t_len, batch) = (dims[time_dim], dims[1 - time_dim]);
        if t_len == 0 || batch == 0 {
            return Err(Error::invalid(
                "lstm input",
                "at least one time step and one sequence",
                format!("shape {dims:?}"),
            ));
        }
        let h = self.hidden_size;
        let slots = self.layers.len() + self.reverse_layers.len();
        let (h0, c0) = match state {
            Some((h0, c0)) => {
                validate::shape("lstm h_0", &h0.dims(), &[slots, batch, h])?;
                validate::shape("lstm c_0", &c0.dims(), &[slots, batch, h])?;
                (h0, c0)
            }
            None => {
                let device = x.device();
                let zeros = Tensor::<3>::zeros([slots, batch, h], &device);
                (zeros.clone(), zeros)
            }
        };
        let state_of = |s: &Tensor<3>, j: usize| s.clone().narrow(0, j, 1).reshape([batch, h]);

        #[cfg(feature = "tch")]
        if self.fused
            && dl_kernels::has_torch_lstm(&x.device(), x.dtype())
            && let Some(result) = self.torch_forward(x.clone(), &h0, &c0)
        {
            return Ok(result);
        }

        let d = self.num_directions();
        let mut input = x;
        let mut h_n = Vec::with_capacity(slots);
        let mut c_n = Vec::with_capacity(slots);
        for layer in 0..self.num_layers {
            let mut outputs = Vec::with_capacity(d);
            for direction in 0..d {
                let j = layer * d + direction;
                let (out, h_last, c_last) = self.run_direction(
                    self.layer(layer, direction == 1),
                    input.clone(),
                    state_of(&h0, j),
                    state_of(&c0, j),
                    direction == 1,
                );
                outputs.push(out);
                h_n.push(h_last);
                c_n.push(c_last);
            }
            let output = if d == 1 {
                outputs.remove(0)
            } else {
                Tensor::cat(outputs, 2)
            };
            input = if layer + 1 < self.num_layers {
                dropout_forward(&self.dropout, output)
            } else {
                output
            };
        }
        Ok((input, (Tensor::stack(h_n, 0), Tensor::stack(c_n, 0))))
    }

    /// Every layer through LibTorch's own LSTM (`dl_kernels::torch_lstm`: one ATen call per
    /// two layers, both directions, the dropout between those two included; Burn's dropout
    /// between calls); `None` when the layers do not all have both biases or all none, which
    /// `at::lstm` cannot take.
    #[cfg(feature = "tch")]
    fn torch_forward(
        &self,
        x: Tensor<3>,
        h0: &Tensor<3>,
        c0: &Tensor<3>,
    ) -> Option<(Tensor<3>, LstmState)> {
        let d = self.num_directions();
        let mut weights = Vec::with_capacity(self.num_layers * d);
        for layer in 0..self.num_layers {
            for direction in 0..d {
                let p = self.layer(layer, direction == 1);
                let biases = match (&p.bias_ih, &p.bias_hh) {
                    (Some(b_ih), Some(b_hh)) => Some((b_ih.val(), b_hh.val())),
                    (None, None) => None,
                    _ => return None,
                };
                weights.push(dl_kernels::TorchLstmWeights {
                    w_ih: p.weight_ih.val(),
                    w_hh: p.weight_hh.val(),
                    biases,
                });
            }
        }
        let has_biases = weights[0].biases.is_some();
        if weights.iter().any(|w| w.biases.is_some() != has_biases) {
            return None;
        }
        // Burn's rule for its Dropout (see `dropout_forward`): training flag on, autodiff
        // device, nonzero probability.
        let train = self.dropout.training.is_enabled()
            && x.device().is_autodiff()
            && self.dropout.prob > 0.0;
        let per_call = dl_kernels::TORCH_LSTM_MAX_LAYERS;
        let mut input = x;
        let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
        for first in (0..self.num_layers).step_by(per_call) {
            let layers = per_call.min(self.num_layers - first);
            let (h0, c0) = if layers == self.num_layers {
                (h0.clone(), c0.clone())
            } else {
                let narrow = |s: &Tensor<3>| s.clone().narrow(0, first * d, layers * d);
                (narrow(h0), narrow(c0))
            };
            if first > 0 {
                input = dropout_forward(&self.dropout, input);
            }
            let layout = dl_kernels::TorchLstmLayout {
                num_layers: layers,
                has_biases,
                bidirectional: self.bidirectional,
                batch_first: self.batch_first,
                dropout: if train { self.dropout.prob } else { 0.0 },
                train,
            };
            let group = &weights[first * d..(first + layers) * d];
            let out = dl_kernels::torch_lstm(&input, group, &h0, &c0, layout)?;
            input = out.output;
            h_n.push(out.h_n);
            c_n.push(out.c_n);
        }
        let join = |mut states: Vec<Tensor<3>>| {
            if states.len() == 1 {
                states.remove(0)
            } else {
                Tensor::cat(states, 0)
            }
        };
        Some((input, (join(h_n), join(c_n))))
    }

    /// (outputs, h_T, c_T) from the `[2, T, B, H]` (or `[2, B, T, H]`) states of the fused
    /// kernels: every h_t, then every c_t, in time order; `dims` those of the layer's input.
    fn split_states(
        &self,
        states: Tensor<4>,
        reverse: bool,
        dims: [usize; 3],
    ) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
        let (h, time_dim) = (self.hidden_size, self.time_dim());
        let (t_len, batch) = (dims[time_dim], dims[1 - time_dim]);
        let last = if reverse { 0 } else { t_len - 1 };
        let final_state = |which: usize| {
            states
                .clone()
                .narrow(0, which, 1)
                .narrow(1 + time_dim, last, 1)
                .reshape([batch, h])
        };
        let (h_last, c_last) = (final_state(0), final_state(1));
        let out = states.narrow(0, 0, 1).reshape([dims[0], dims[1], h]);
        (out, h_last, c_last)
    }

    /// One layer in one direction over the whole sequence; returns (outputs, h_T, c_T).
    fn run_direction(
        &self,
        params: &LstmLayer,
        x: Tensor<3>,
        mut h_t: Tensor<2>,
        mut c_t: Tensor<2>,
        reverse: bool,
    ) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
        let h = self.hidden_size;
        let dims = x.dims();
        let time_dim = self.time_dim();
        let (t_len, batch) = (dims[time_dim], dims[1 - time_dim]);

        let bias = params.folded_bias();
        // Inference on a device with the host kernel: the input projection inside each step.
        #[cfg(feature = "flex")]
        if self.fused {
            let (w_ih, w_hh) = (params.weight_ih.val(), params.weight_hh.val());
            let weights = dl_kernels::LstmLayerWeights {
                w_ih: &w_ih,
                w_hh: &w_hh,
                bias: bias.as_ref(),
            };
            if let Some(states) =
                dl_kernels::lstm_layer_inference(&x, weights, &h_t, &c_t, reverse, self.batch_first)
            {
                return self.split_states(states, reverse, dims);
            }
        }

        // All time steps' input projections in one product, both biases folded in once.
        let projected = linear(
            x.reshape([dims[0] * dims[1], dims[2]]),
            params.weight_ih.val().transpose(),
            bias,
        )
        .reshape([dims[0], dims[1], 4 * h]);
        if self.fused {
            let w_hh = params.weight_hh.val();
            let fused = if self.batch_first {
                dl_kernels::lstm_recurrence_batch_first(&projected, &w_hh, &h_t, &c_t, reverse)
            } else {
                dl_kernels::lstm_recurrence(&projected, &w_hh, &h_t, &c_t, reverse)
            };
            if let Some(states) = fused {
                return self.split_states(states, reverse, dims);
            }
        }
        let w_hh = params.weight_hh.val().transpose(); // [H, 4H], once per forward

        let mut steps = Vec::with_capacity(t_len);
        split_steps(projected, time_dim, &mut steps);
        if reverse {
            steps.reverse();
        }

        let mut outputs = Vec::with_capacity(t_len);
        for x_t in steps {
            let gates = x_t.reshape([batch, 4 * h]) + h_t.matmul(w_hh.clone());
            // Sigmoid only where it is used (i, f and o; not the g quarter, which gets tanh):
            // transcendental functions are most of an LSTM step's time on the CPU.
            let s_if = sigmoid(gates.clone().narrow(1, 0, 2 * h));
            let i = s_if.clone().narrow(1, 0, h);
            let f = s_if.narrow(1, h, h);
            let g = gates.clone().narrow(1, 2 * h, h).tanh();
            let o = sigmoid(gates.narrow(1, 3 * h, h));
            c_t = f * c_t + i * g;
            h_t = o * c_t.clone().tanh();
            outputs.push(h_t.clone());
        }
        if reverse {
            outputs.reverse();
        }
        (Tensor::stack(outputs, time_dim), h_t, c_t)
    }
}

/// Split `x` into its slices of length 1 along `dim`, in order, by recursive halving.
///
/// Burn 0.22's autodiff differentiates a slice by writing its gradient into a zero tensor of
/// the sliced tensor's full size. Slicing `T` steps directly out of `[T, B, 4H]` would cost
/// `T` full-size zero tensors (and additions) in the backward pass, `O(T² · B · 4H)`; halving
/// costs two of the parent's size per split, `O(T log T · B · 4H)` in all. In a forward pass
/// without autodiff the slices are views either way.
fn split_steps(x: Tensor<3>, dim: usize, out: &mut Vec<Tensor<3>>) {
    let len = x.dims()[dim];
    if len <= 1 {
        out.push(x);
        return;
    }
    let half = len / 2;
    split_steps(x.clone().narrow(dim, 0, half), dim, out);
    split_steps(x.narrow(dim, half, len - half), dim, out);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{assert_uniform, values};
    use burn::tensor::Distribution;
    use dl_core::BackendKind;

    #[test]
    fn init_is_uniform_one_over_sqrt_hidden() {
        let device = BackendKind::Flex.device().unwrap();
        dl_core::seed_device(&device, 11);
        let lstm = LstmConfig::new(30, 25).init(&device).unwrap();
        let bound = 1.0 / 5.0;
        let layer = &lstm.layers[0];
        assert_uniform(&values(layer.weight_ih.val()), bound, "weight_ih");
        assert_uniform(&values(layer.weight_hh.val()), bound, "weight_hh");
        let mut biases = values(layer.bias_ih.as_ref().unwrap().val());
        biases.extend(values(layer.bias_hh.as_ref().unwrap().val()));
        biases.extend(values(
            LstmConfig::new(1, 25)
                .with_num_layers(5)
                .init(&device)
                .unwrap()
                .layers[4]
                .bias_ih
                .as_ref()
                .unwrap()
                .val(),
        ));
        assert!(biases.iter().all(|b| b.abs() <= bound));
        // torch.nn.LSTM(30, 25): 4·25·(30 + 25) + 2·4·25 = 5700 parameters.
        assert_eq!(lstm.num_params(), 5700);
    }

    #[test]
    fn split_steps_keeps_every_step_in_order() {
        let device = BackendKind::Flex.device().unwrap();
        for (len, dim) in [(1, 0), (2, 1), (7, 0), (8, 1), (13, 1)] {
            let shape = if dim == 0 { [len, 2, 3] } else { [2, len, 3] };
            let x = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let mut steps = Vec::new();
            split_steps(x.clone(), dim, &mut steps);
            assert_eq!(steps.len(), len);
            for (t, step) in steps.into_iter().enumerate() {
                step.into_data()
                    .assert_eq(&x.clone().narrow(dim, t, 1).into_data(), true);
            }
        }
    }

    #[test]
    fn shapes_and_directions() {
        let device = BackendKind::Flex.device().unwrap();
        let lstm = LstmConfig::new(3, 4)
            .with_num_layers(3)
            .with_bidirectional(true)
            .with_bias(false)
            .init(&device)
            .unwrap();
        assert_eq!(lstm.layers.len(), 3);
        assert_eq!(lstm.reverse_layers.len(), 3);
        assert_eq!(lstm.layers[0].weight_ih.dims(), [16, 3]);
        assert_eq!(lstm.reverse_layers[1].weight_ih.dims(), [16, 8]);
        assert!(lstm.layers[0].bias_ih.is_none());
        assert!(
            LstmConfig::new(3, 4)
                .init(&device)
                .unwrap()
                .reverse_layers
                .is_empty()
        );
        let (out, (h, c)) = lstm.forward(Tensor::zeros([5, 2, 3], &device), None);
        assert_eq!(out.dims(), [5, 2, 8]);
        assert_eq!(h.dims(), [6, 2, 4]);
        assert_eq!(c.dims(), [6, 2, 4]);
    }

    #[test]
    fn one_step_by_hand() {
        // H = 1, input 1, all weights w and biases b: gates z = x w + h w + 2b, identical for
        // i, f, g, o. With x = 1, h0 = c0 = 0, w = 0.5, b = 0: z = 0.5,
        // c1 = σ(z)·tanh(z), h1 = σ(z)·tanh(c1).
        let device = BackendKind::Flex.device().unwrap();
        let mut lstm = LstmConfig::new(1, 1).init(&device).unwrap();
        let layer = &mut lstm.layers[0];
        layer.weight_ih = Param::from_tensor(Tensor::full([4, 1], 0.5, &device));
        layer.weight_hh = Param::from_tensor(Tensor::full([4, 1], 0.5, &device));
        layer.bias_ih = Some(Param::from_tensor(Tensor::zeros([4], &device)));
        layer.bias_hh = Some(Param::from_tensor(Tensor::zeros([4], &device)));
        let (out, (h, c)) = lstm.forward(Tensor::ones([1, 1, 1], &device), None);
        let s = 1.0 / (1.0 + (-0.5f64).exp());
        let c1 = s * 0.5f64.tanh();
        let h1 = s * c1.tanh();
        assert!((values(c)[0] - c1).abs() < 1e-6);
        assert!((values(h)[0] - h1).abs() < 1e-6);
        assert!((values(out)[0] - h1).abs() < 1e-6);
    }

    #[test]
    fn batch_first_is_a_transpose_of_time_first() {
        let device = BackendKind::Flex.device().unwrap();
        dl_core::seed_device(&device, 5);
        let lstm = LstmConfig::new(3, 4)
            .with_num_layers(2)
            .init(&device)
            .unwrap();
        let mut bf = lstm.clone();
        bf.batch_first = true;
        let x = Tensor::<3>::random([6, 2, 3], Distribution::Normal(0.0, 1.0), &device);
        let (a, (ha, _)) = lstm.forward(x.clone(), None);
        let (b, (hb, _)) = bf.forward(x.swap_dims(0, 1), None);
        dl_core::assert_tensor_close!(b.swap_dims(0, 1), a, 1e-6, 1e-7);
        dl_core::assert_tensor_close!(hb, ha, 1e-6, 1e-7);
    }

    #[test]
    fn reverse_direction_reads_the_sequence_backwards() {
        // The reverse half of a one-layer bidirectional LSTM equals a forward LSTM with the
        // same parameters run on the time-reversed input.
        let device = BackendKind::Flex.device().unwrap();
        dl_core::seed_device(&device, 6);
        let bi = LstmConfig::new(2, 3)
            .with_bidirectional(true)
            .init(&device)
            .unwrap();
        let mut uni = LstmConfig::new(2, 3).init(&device).unwrap();
        uni.layers[0] = bi.reverse_layers[0].clone();
        let x = Tensor::<3>::random([5, 2, 2], Distribution::Normal(0.0, 1.0), &device);
        let (out_bi, (h_bi, _)) = bi.forward(x.clone(), None);
        let (out_uni, (h_uni, _)) = uni.forward(x.flip([0]), None);
        dl_core::assert_tensor_close!(out_bi.narrow(2, 3, 3), out_uni.flip([0]), 1e-6, 1e-7);
        dl_core::assert_tensor_close!(h_bi.narrow(0, 1, 1), h_uni, 1e-6, 1e-7);
    }

    #[test]
    fn dropout_between_layers_only_in_training() {
        let device = BackendKind::Flex.autodiff_device().unwrap();
        dl_core::seed_device(&device, 9);
        let lstm = LstmConfig::new(3, 8)
            .with_num_layers(2)
            .with_dropout(0.5)
            .init(&device)
            .unwrap();
        let x = Tensor::<3>::random([4, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        let eval = crate::set_training(lstm.clone(), false);
        let (a, _) = eval.forward(x.clone(), None);
        let (b, _) = eval.forward(x.clone(), None);
        a.clone().into_data().assert_eq(&b.into_data(), true);
        // Plain device: inactive whatever the flag.
        let plain = lstm.valid();
        let (c, _) = plain.forward(x.clone().inner(), None);
        dl_core::assert_tensor_close!(c, a.clone().inner(), 1e-6, 1e-7);
        // Training on autodiff: two passes differ (the masks differ).
        let (d, _) = lstm.forward(x.clone(), None);
        let (e, _) = lstm.forward(x, None);
        assert_ne!(d.into_data(), e.into_data());
    }

    #[test]
    fn errors_name_the_tensor() {
        let device = BackendKind::Flex.device().unwrap();
        assert!(LstmConfig::new(3, 0).init(&device).is_err());
        assert!(
            LstmConfig::new(3, 2)
                .with_dropout(1.0)
                .init(&device)
                .is_err()
        );
        let lstm = LstmConfig::new(3, 2)
            .with_num_layers(2)
            .init(&device)
            .unwrap();
        let err = lstm
            .try_forward(Tensor::zeros([4, 2, 5], &device), None)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for lstm input: expected [4, 2, 3], got [4, 2, 5]"
        );
        let h0 = Tensor::zeros([1, 2, 2], &device);
        let err = lstm
            .try_forward(Tensor::zeros([4, 2, 3], &device), Some((h0.clone(), h0)))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for lstm h_0: expected [2, 2, 2], got [1, 2, 2]"
        );
        assert!(
            lstm.try_forward(Tensor::zeros([0, 2, 3], &device), None)
                .is_err()
        );
    }
}
