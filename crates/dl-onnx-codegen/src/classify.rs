//! Running the generated model on checked input, and its [`Classifier`] implementation.

use burn::tensor::Tensor;
use dl_core::{Classifier, Error, Result};

use crate::OnnxCnn;

/// The image shape the model was exported for, `[channels, height, width]`
/// (`fixtures/gen/onnx_codegen.py`: in_channels 1, image_size 28; the ONNX input `images`
/// is `[batch, 1, 28, 28]` with a dynamic batch axis).
pub const INPUT_SHAPE: [usize; 3] = [1, 28, 28];

/// Number of classes, the width of the ONNX output `logits` `[batch, 10]`.
pub const NUM_CLASSES: usize = 10;

/// Class logits `[batch, NUM_CLASSES]` for images `[batch, 1, 28, 28]`, or an error naming
/// the expected shape when `images` has another one (the generated `forward` would panic).
///
/// ```
/// use burn::tensor::Tensor;
/// let device = dl_core::BackendKind::Flex.device()?;
/// let model = dl_onnx_codegen::load_cnn(&device)?;
/// let wrong = Tensor::<4>::zeros([2, 3, 28, 28], &device);
/// let err = dl_onnx_codegen::checked_logits(&model, wrong).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "shape mismatch for ONNX CNN images: expected [2, 1, 28, 28], got [2, 3, 28, 28]"
/// );
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn checked_logits(model: &OnnxCnn, images: Tensor<4>) -> Result<Tensor<2>> {
    let [batch, channels, height, width] = images.dims();
    if batch == 0 {
        return Err(Error::Empty {
            what: "ONNX CNN images".into(),
        });
    }
    if [channels, height, width] != INPUT_SHAPE {
        let [c, h, w] = INPUT_SHAPE;
        return Err(Error::shape_mismatch(
            "ONNX CNN images",
            &[batch, c, h, w],
            &[batch, channels, height, width],
        ));
    }
    Ok(model.forward(images))
}

/// The generated model as a dl-rs [`Classifier`]: `logits` is the generated `forward`
/// (images `[batch, 1, 28, 28]`; use [`checked_logits`] for input that is not known to
/// have that shape).
impl Classifier for OnnxCnn {
    type Input = Tensor<4>;

    fn logits(&self, input: Tensor<4>) -> Tensor<2> {
        self.forward(input)
    }

    fn num_classes(&self) -> usize {
        NUM_CLASSES
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use burn::tensor::Tensor;
    use dl_core::BackendKind;

    use super::*;
    use crate::load_cnn;

    #[test]
    fn wrong_shapes_and_empty_batches_are_errors() {
        let device = BackendKind::Flex.device().unwrap();
        let model = load_cnn(&device).unwrap();
        for dims in [[1, 2, 28, 28], [1, 1, 27, 28], [1, 1, 28, 32]] {
            let err = checked_logits(&model, Tensor::zeros(dims, &device)).unwrap_err();
            assert!(
                matches!(err, Error::ShapeMismatch { .. }),
                "{dims:?}: {err}"
            );
        }
        let err = checked_logits(&model, Tensor::zeros([0, 1, 28, 28], &device)).unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err}");
    }

    #[test]
    fn checked_logits_is_the_generated_forward() {
        let device = BackendKind::NdArray.device().unwrap();
        let model = load_cnn(&device).unwrap();
        let images = Tensor::<4>::ones([2, 1, 28, 28], &device);
        let checked = checked_logits(&model, images.clone()).unwrap();
        assert_eq!(checked.dims(), [2, model.num_classes()]);
        dl_core::assert_tensor_close!(checked, model.logits(images), 0.0, 0.0);
    }
}
