//! The chapter's sinusoidal positional encoding.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use dl_core::{Error, Result, validate};

/// Configuration of a [`PositionalEncoding`].
#[derive(Config, Debug)]
pub struct PositionalEncodingConfig {
    /// Longest sequence the table covers.
    pub max_seq_length: usize,
    /// Model width; must be even (the formula interleaves sine and cosine columns).
    pub d_model: usize,
}

/// Adds the fixed sinusoidal table of the chapter's `Transformer._create_positional_encoding`:
///
/// ```text
/// div[k]       = exp(2k · (−ln 10000 / d_model))      k = 0 .. d_model/2
/// pe[p, 2k]    = sin(p · div[k])
/// pe[p, 2k+1]  = cos(p · div[k])
/// ```
///
/// The table `[max_seq_length, d_model]` is computed in `f32` in the order PyTorch computes it
/// (so it matches the chapter's table to a few ulp). It is not a parameter: PyTorch keeps it as a
/// plain attribute, outside the `state_dict`, and here it is a constant tensor field — not
/// trained, not counted by `num_params`, not written to records, but moved by `to_device` with
/// the rest of the module.
///
/// # PyTorch keys
///
/// None.
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::Tensor;
/// use dl_layers::PositionalEncodingConfig;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let pe = PositionalEncodingConfig::new(100, 16).init(&device)?;
/// assert_eq!(pe.num_params(), 0);
/// let y = pe.forward(Tensor::<3>::zeros([2, 10, 16], &device));
/// assert_eq!(y.dims(), [2, 10, 16]);
/// assert!(pe.try_forward(Tensor::<3>::zeros([2, 101, 16], &device)).is_err());
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct PositionalEncoding {
    /// The table `[max_seq_length, d_model]` (a constant, not a parameter).
    pub pe: Tensor<2>,
}

impl PositionalEncodingConfig {
    /// Compute the table on `device`.
    ///
    /// Fails when a size is 0 or `d_model` is odd (the chapter's formula then assigns
    /// `⌈d/2⌉` cosine columns to `⌊d/2⌋` slots and PyTorch raises).
    pub fn init(&self, device: &Device) -> Result<PositionalEncoding> {
        validate::positive("positional encoding max_seq_length", self.max_seq_length)?;
        validate::positive("positional encoding d_model", self.d_model)?;
        if !self.d_model.is_multiple_of(2) {
            return Err(Error::invalid(
                "positional encoding d_model",
                "an even number",
                self.d_model,
            ));
        }
        let table = sinusoid_table(self.max_seq_length, self.d_model);
        let data = TensorData::new(table, [self.max_seq_length, self.d_model]);
        Ok(PositionalEncoding {
            pe: Tensor::from_data(data, device),
        })
    }
}

/// The table in row-major order, in `f32` arithmetic as PyTorch evaluates the chapter's code:
/// `arange(...).float() * c` with `c = −ln(10000)/d` rounded to `f32`, `exp` in `f32`,
/// `position * div` in `f32`, then `sin` / `cos`.
fn sinusoid_table(max_len: usize, d: usize) -> Vec<f32> {
    let c = (-(10000f64.ln() / d as f64)) as f32;
    let div: Vec<f32> = (0..d).step_by(2).map(|k| (k as f32 * c).exp()).collect();
    let mut table = vec![0f32; max_len * d];
    for (p, row) in table.chunks_mut(d).enumerate() {
        for (k, &dv) in div.iter().enumerate() {
            let angle = p as f32 * dv;
            row[2 * k] = angle.sin();
            row[2 * k + 1] = angle.cos();
        }
    }
    table
}

impl PositionalEncoding {
    /// Longest sequence the table covers.
    pub fn max_seq_length(&self) -> usize {
        self.pe.dims()[0]
    }

    /// Model width.
    pub fn d_model(&self) -> usize {
        self.pe.dims()[1]
    }

    /// The table `[max_seq_length, d_model]`.
    pub fn table(&self) -> Tensor<2> {
        self.pe.clone()
    }

    /// `x + pe[:T]` for `x` `[B, T, d_model]`.
    ///
    /// # Panics
    ///
    /// When `T > max_seq_length` or the last axis is not `d_model` (see
    /// [`PositionalEncoding::try_forward`]).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        validate::or_panic(self.try_forward(x))
    }

    /// [`PositionalEncoding::forward`], failing when the sequence is longer than the table or
    /// the width is not `d_model`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let [_, t, _] = x.dims();
        validate::last_dim("positional encoding input", &x.dims(), self.d_model())?;
        if t > self.max_seq_length() {
            return Err(Error::invalid(
                "positional encoding sequence length",
                format!("at most max_seq_length = {}", self.max_seq_length()),
                t,
            ));
        }
        let device = x.device();
        let pe = self
            .pe
            .clone()
            .to_device(&device)
            .narrow(0, 0, t)
            .unsqueeze::<3>();
        Ok(x + pe)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    #[test]
    fn table_by_hand() {
        // d = 4: div = [1, exp(-2 ln(10000)/4)] = [1, 0.01].
        // Row 0: [sin 0, cos 0, sin 0, cos 0] = [0, 1, 0, 1];
        // row 2: [sin 2, cos 2, sin 0.02, cos 0.02].
        let t = sinusoid_table(3, 4);
        assert_eq!(&t[0..4], &[0.0, 1.0, 0.0, 1.0]);
        let expected = [2f64.sin(), 2f64.cos(), 0.02f64.sin(), 0.02f64.cos()];
        for (a, e) in t[8..12].iter().zip(expected) {
            assert!((*a as f64 - e).abs() < 1e-6, "{a} vs {e}");
        }
    }

    #[test]
    fn constant_moves_with_the_module_and_is_not_a_parameter() {
        let device = BackendKind::Flex.device().unwrap();
        let pe = PositionalEncodingConfig::new(8, 4).init(&device).unwrap();
        assert_eq!(pe.num_params(), 0);
        assert!(
            pe.clone().into_record().is_empty(),
            "the table is not saved"
        );
        let ndarray = BackendKind::NdArray.device().unwrap();
        let moved = pe.to_device(&ndarray);
        assert_eq!(moved.pe.device(), ndarray);
        assert_eq!(moved.devices(), vec![ndarray.clone()]);
        let y = moved.forward(Tensor::zeros([1, 3, 4], &ndarray));
        assert_eq!(y.dims(), [1, 3, 4]);
    }

    #[test]
    fn errors() {
        let device = BackendKind::Flex.device().unwrap();
        let err = PositionalEncodingConfig::new(8, 5)
            .init(&device)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid positional encoding d_model: expected an even number, got 5"
        );
        assert!(PositionalEncodingConfig::new(0, 4).init(&device).is_err());
        let pe = PositionalEncodingConfig::new(8, 4).init(&device).unwrap();
        let err = pe
            .try_forward(Tensor::zeros([1, 9, 4], &device))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid positional encoding sequence length: expected at most max_seq_length = 8, got 9"
        );
        assert!(pe.try_forward(Tensor::zeros([1, 8, 6], &device)).is_err());
        assert_eq!(
            pe.try_forward(Tensor::zeros([1, 8, 4], &device))
                .unwrap()
                .dims(),
            [1, 8, 4]
        );
    }
}
