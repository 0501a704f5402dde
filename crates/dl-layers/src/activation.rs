//! Element-wise activation functions and their derivatives.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Tensor;
use burn::tensor::activation;
use serde::{Deserialize, Serialize};

/// An element-wise activation, chosen by name (for configs and the command line).
///
/// Serialised in lower case (`"relu"`, `"sigmoid"`, `"tanh"`, `"gelu"`, `"identity"`), and parsed
/// case-insensitively by [`FromStr`]. [`Activation::Gelu`] is the exact (erf) form, PyTorch's
/// `F.gelu(x, approximate="none")`.
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_layers::Activation;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let act: Activation = "tanh".parse()?;
/// let x = Tensor::<1>::from_floats([0.0, 1.0], &device);
/// let y = act.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
/// assert!((y[1] - 1.0f32.tanh()).abs() < 1e-6);
/// // d tanh(x) / dx = 1 - tanh(x)^2
/// let d = act.derivative(x).into_data().try_to_vec::<f32>().unwrap();
/// assert!((d[0] - 1.0).abs() < 1e-6);
/// assert!("swish".parse::<Activation>().is_err());
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `x Φ(x) = x / 2 · (1 + erf(x / √2))`, the exact GELU, with its exact gradient on
    /// every backend (see [`Activation::forward`]).
    Gelu,
    /// `x`.
    Identity,
}

impl Activation {
    /// Every activation, in declaration order.
    pub const ALL: [Activation; 5] = [
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
        Activation::Identity,
    ];

    /// The lower-case name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
            Activation::Identity => "identity",
        }
    }

    /// Apply the activation element-wise.
    ///
    /// GELU on an autodiff device is written with `erf` so that its gradient is PyTorch's:
    /// Burn 0.22's fused `gelu` backward on NdArray and the CubeCL backends differentiates the
    /// tanh approximation instead (off by up to ~1e-3).
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => activation::relu(x),
            Activation::Sigmoid => activation::sigmoid(x),
            Activation::Tanh => activation::tanh(x),
            Activation::Gelu => gelu_exact(x),
            Activation::Identity => x,
        }
    }

    /// The derivative `f'(x)` with respect to the pre-activation input `x`, element-wise.
    ///
    /// These are the derivatives PyTorch's autograd uses: ReLU's is 0 at `x = 0` (PyTorch's
    /// `threshold_backward` passes the gradient only where `x > 0`), sigmoid's is
    /// `σ(x)(1 − σ(x))`, tanh's `1 − tanh²(x)`, exact GELU's `Φ(x) + x φ(x)` with `φ` the standard
    /// normal density, identity's 1.
    ///
    /// Note the argument: the chapter's NumPy network evaluates the derivative from the
    /// *activation output* `a` (`a (1 − a)` for sigmoid); this takes the input `x`.
    pub fn derivative<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => x.greater_elem(0.0).float(),
            Activation::Sigmoid => {
                let s = activation::sigmoid(x);
                s.clone() * (s.neg() + 1.0)
            }
            Activation::Tanh => {
                let t = x.tanh();
                t.square().neg() + 1.0
            }
            Activation::Gelu => {
                // Φ(x) = (1 + erf(x / √2)) / 2,  φ(x) = exp(−x² / 2) / √(2π)
                let cdf = (x.clone() * std::f64::consts::FRAC_1_SQRT_2)
                    .erf()
                    .add_scalar(1.0)
                    * 0.5;
                let inv_sqrt_2pi = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
                let pdf = (x.clone().square() * -0.5).exp() * inv_sqrt_2pi;
                cdf + x * pdf
            }
            Activation::Identity => x.ones_like(),
        }
    }
}

/// Exact GELU whose gradient is exact on every backend.
///
/// Burn 0.22's fused `gelu` computes the exact (erf) value, but its default `gelu_backward`
/// (used by ndarray and the CubeCL backends; Flex and LibTorch override it) differentiates the
/// tanh approximation, off by up to ~1e-3 from PyTorch's gradient. On an autodiff device the
/// activation is therefore written with `erf`, whose backward is exact; elsewhere the fused
/// kernel is used.
fn gelu_exact<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.device().is_autodiff() {
        let cdf = (x.clone() * std::f64::consts::FRAC_1_SQRT_2)
            .erf()
            .add_scalar(1.0)
            * 0.5;
        x * cdf
    } else {
        activation::gelu(x)
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = dl_core::Error;

    /// Case-insensitive; `linear` and `none` are accepted for identity.
    fn from_str(s: &str) -> dl_core::Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        let activation = match lower.as_str() {
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "gelu" => Activation::Gelu,
            "identity" | "linear" | "none" => Activation::Identity,
            _ => {
                return Err(dl_core::Error::invalid(
                    "activation",
                    format!(
                        "one of {}",
                        Activation::ALL.map(Activation::name).join(", ")
                    ),
                    format!("`{s}`"),
                ));
            }
        };
        Ok(activation)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    fn grid(device: &burn::tensor::Device) -> Tensor<1> {
        // -4 .. 4 in steps of 0.25, which includes 0 (ReLU's kink) and both tails.
        let values: Vec<f32> = (-16..=16).map(|i| i as f32 * 0.25).collect();
        let n = values.len();
        Tensor::from_data(burn::tensor::TensorData::new(values, [n]), device)
    }

    #[test]
    fn derivative_matches_autodiff() {
        for kind in [BackendKind::Flex, BackendKind::NdArray] {
            let device = kind.autodiff_device().unwrap();
            for act in Activation::ALL {
                let x = grid(&device).require_grad();
                let grads = act.forward(x.clone()).sum().backward();
                let autodiff = x.grad(&grads).unwrap();
                let ours = act.derivative(x.inner());
                dl_core::assert_tensor_close!(
                    ours,
                    autodiff,
                    1e-5,
                    1e-6,
                    format!("{act} derivative on {kind}")
                );
            }
        }
    }

    #[test]
    fn forward_values_by_hand() {
        let device = BackendKind::Flex.device().unwrap();
        let x = Tensor::<1>::from_floats([-1.0, 0.0, 2.0], &device);
        let get = |a: Activation| {
            a.forward(x.clone())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(get(Activation::Relu), vec![0.0, 0.0, 2.0]);
        assert_eq!(get(Activation::Identity), vec![-1.0, 0.0, 2.0]);
        let s = get(Activation::Sigmoid);
        assert!((s[0] - 1.0 / (1.0 + 1f32.exp())).abs() < 1e-6);
        assert!((s[1] - 0.5).abs() < 1e-7);
        // GELU(2) = 2 Φ(2) = 2 · 0.977249868 (standard normal table)
        let g = get(Activation::Gelu);
        assert!((g[2] - 1.954_499_7).abs() < 1e-5, "{g:?}");
        assert_eq!(g[1], 0.0);
    }

    #[test]
    fn relu_derivative_is_zero_at_zero() {
        let device = BackendKind::Flex.device().unwrap();
        let x = Tensor::<1>::from_floats([-1.0, 0.0, 1e-3], &device);
        let d = Activation::Relu
            .derivative(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(d, vec![0.0, 0.0, 1.0]);
    }

    #[test]
    fn names_parse_and_serialise() {
        for act in Activation::ALL {
            assert_eq!(act.name().parse::<Activation>().unwrap(), act);
            assert_eq!(
                act.to_string()
                    .to_uppercase()
                    .parse::<Activation>()
                    .unwrap(),
                act
            );
            let json = serde_json::to_string(&act).unwrap();
            assert_eq!(json, format!("\"{}\"", act.name()));
            assert_eq!(serde_json::from_str::<Activation>(&json).unwrap(), act);
        }
        assert_eq!(
            "linear".parse::<Activation>().unwrap(),
            Activation::Identity
        );
        let err = "swish".parse::<Activation>().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid activation: expected one of relu, sigmoid, tanh, gelu, identity, got `swish`"
        );
    }
}
