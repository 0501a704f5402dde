//! Building the generated model with the weights PyTorch exported.

use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;
use dl_core::{Error, Result};

use crate::OnnxCnn;

/// The `.bpk` file (Burn's burnpack format) that burn-onnx wrote from the ONNX initializers,
/// 256-byte aligned like burnpack's tensor data so that it can be read without copying.
#[repr(C, align(256))]
struct Aligned<B: ?Sized>(B);

static WEIGHTS: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model/cnn.bpk")));

/// The chapter's CNN as burn-onnx generated it, on `device`, with PyTorch's weights.
///
/// The weights are embedded in the library at build time, so nothing is read from disk.
/// Every tensor of the model must be present in them with its shape and no extra tensor may
/// be left over; otherwise the error says which (this would mean the generated code and its
/// weights file disagree, which a rebuild fixes).
///
/// ```
/// use burn::module::Module;
/// let device = dl_core::BackendKind::NdArray.device()?;
/// let model = dl_onnx_codegen::load_cnn(&device)?;
/// // PyTorch's `sum(p.numel() for p in model.parameters())` for this configuration.
/// assert_eq!(model.num_params(), 40 + 296 + 1168 + 4640 + 330);
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn load_cnn(device: &Device) -> Result<OnnxCnn> {
    load_into(OnnxCnn::new(device), BurnpackStore::from_static(&WEIGHTS.0))
}

/// Apply every tensor of `store` to `model`, accepting neither missing nor unused tensors.
fn load_into(mut model: OnnxCnn, mut store: BurnpackStore) -> Result<OnnxCnn> {
    const WHAT: &str = "ONNX CNN weights (cnn.bpk)";
    let result = model
        .load_from(&mut store)
        .map_err(|e| Error::invalid(WHAT, "a burnpack file matching the generated model", e))?;
    if !result.unused.is_empty() {
        return Err(Error::invalid(
            WHAT,
            "only tensors of the generated model",
            format!("unused tensors {:?}", result.unused),
        ));
    }
    Ok(model)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use burn::module::Module;
    use burn::store::ModuleStore;
    use burn::tensor::Bytes;
    use dl_core::BackendKind;

    use super::*;

    #[test]
    fn every_tensor_is_loaded_on_both_cpu_backends() {
        for backend in [BackendKind::Flex, BackendKind::NdArray] {
            let device = backend.device().unwrap();
            let mut model = load_cnn(&device).unwrap();
            let mut store = BurnpackStore::from_static(&WEIGHTS.0);
            let result = model.load_from(&mut store).unwrap();
            // 5 layers with weight and bias each (PyTorch's state_dict keys conv1.weight ...).
            assert_eq!(result.applied.len(), 10, "{backend}: {:?}", result.applied);
            assert!(result.missing.is_empty() && result.unused.is_empty());
            // Parameter counts by hand: conv 3·3·in·out + out, linear in·out + out.
            assert_eq!(model.num_params(), 40 + 296 + 1168 + 4640 + 330);
        }
    }

    #[test]
    fn loaded_weights_replace_the_random_initialisation() {
        let device = BackendKind::Flex.device().unwrap();
        let bytes = |t: &burn::store::burn_pack::Tensor| t.to_bytes().unwrap().to_vec();
        let fresh = OnnxCnn::new(&device).collect(None, None, false);
        let loaded = load_cnn(&device).unwrap().collect(None, None, false);
        let mut store = BurnpackStore::from_static(&WEIGHTS.0);
        let embedded = store.get_all_tensors().unwrap();
        assert_eq!(loaded.len(), 10);
        assert_eq!(embedded.len(), 10);
        for tensor in &loaded {
            let stored = &embedded[&tensor.name];
            assert_eq!(
                bytes(tensor),
                bytes(stored),
                "{} is the embedded tensor",
                tensor.name
            );
            let random = fresh.iter().find(|t| t.name == tensor.name).unwrap();
            assert_ne!(bytes(random), bytes(tensor), "{} was replaced", tensor.name);
        }
    }

    #[test]
    fn a_corrupt_weights_file_is_an_error_not_a_panic() {
        let device = BackendKind::Flex.device().unwrap();
        let truncated = WEIGHTS.0[..WEIGHTS.0.len() / 2].to_vec();
        for bytes in [vec![0u8; 16], truncated] {
            let store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
            let err = load_into(OnnxCnn::new(&device), store).unwrap_err();
            assert!(err.to_string().contains("ONNX CNN weights"), "{err}");
        }
    }
}
