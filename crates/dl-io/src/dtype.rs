//! Floating-point tensor bytes from a file, decoded into f32 [`TensorData`].
//!
//! Both readers (safetensors and PyTorch) end here, so that a tensor becomes the same f32 data
//! with the same note whichever file it came from. The bytes are decoded element by element
//! with an explicit byte order, never reinterpreted in place, so neither their alignment nor
//! the host's byte order matters.

use burn::tensor::{DType, TensorData, bf16, f16};

/// A floating-point dtype a weight file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloatDtype {
    F32,
    F64,
    F16,
    BF16,
}

impl FloatDtype {
    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            FloatDtype::F64 => 8,
            FloatDtype::F32 => 4,
            FloatDtype::F16 | FloatDtype::BF16 => 2,
        }
    }

    /// The name used in notes (`F16`), as Burn's `DType` prints it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FloatDtype::F32 => "F32",
            FloatDtype::F64 => "F64",
            FloatDtype::F16 => "F16",
            FloatDtype::BF16 => "BF16",
        }
    }
}

/// The byte order of the element bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteOrder {
    /// Little-endian, as safetensors stores every tensor.
    Little,
    /// The host's, as the PyTorch reader hands tensors back.
    Native,
}

fn array<const N: usize>(chunk: &[u8], order: ByteOrder) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(chunk);
    if order == ByteOrder::Little && cfg!(target_endian = "big") {
        out.reverse();
    }
    out
}

/// Decode `bytes` (whole elements of `dtype`) to f32. f64 values beyond f32's range become
/// ±Inf, which the finiteness check then reports.
fn decode(bytes: &[u8], dtype: FloatDtype, order: ByteOrder) -> Vec<f32> {
    let chunks = bytes.chunks_exact(dtype.size());
    match dtype {
        FloatDtype::F32 => chunks
            .map(|c| f32::from_ne_bytes(array(c, order)))
            .collect(),
        FloatDtype::F64 => chunks
            .map(|c| f64::from_ne_bytes(array(c, order)) as f32)
            .collect(),
        FloatDtype::F16 => chunks
            .map(|c| f16::from_bits(u16::from_ne_bytes(array(c, order))).to_f32())
            .collect(),
        FloatDtype::BF16 => chunks
            .map(|c| bf16::from_bits(u16::from_ne_bytes(array(c, order))).to_f32())
            .collect(),
    }
}

/// Turn one tensor's bytes into f32 data of `shape`.
///
/// Returns an explanation when the byte count does not match the shape (the caller puts it
/// into the error for its file format), and a note when the dtype was converted.
pub(crate) fn float_tensor(
    key: &str,
    bytes: &[u8],
    shape: &[usize],
    dtype: FloatDtype,
    order: ByteOrder,
) -> Result<(TensorData, Option<String>), String> {
    let expected = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size()));
    if expected != Some(bytes.len()) {
        return Err(format!(
            "tensor `{key}` has shape {shape:?} of {} but {} bytes of data",
            dtype.name(),
            bytes.len()
        ));
    }
    let values = decode(bytes, dtype, order);
    let note = (dtype != FloatDtype::F32)
        .then(|| format!("`{key}` converted from {} to F32", dtype.name()));
    Ok((TensorData::new(values, shape.to_vec()), note))
}

/// The f32 values of a floating-point tensor, or `None` for other dtypes.
pub(crate) fn f32_values(data: &TensorData) -> Option<Vec<f32>> {
    match data.dtype() {
        DType::F32 | DType::Flex32 => data.try_to_vec::<f32>().ok(),
        DType::F64 => data
            .try_to_vec::<f64>()
            .ok()
            .map(|v| v.into_iter().map(|x| x as f32).collect()),
        DType::F16 => data
            .try_to_vec::<f16>()
            .ok()
            .map(|v| v.into_iter().map(f16::to_f32).collect()),
        DType::BF16 => data
            .try_to_vec::<bf16>()
            .ok()
            .map(|v| v.into_iter().map(bf16::to_f32).collect()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_decodes_to_the_same_f32_values() {
        // -1.5 and 2.0 are exact in every format; bit patterns from IEEE 754 / bfloat16.
        let cases: [(FloatDtype, Vec<u8>); 4] = [
            (
                FloatDtype::F32,
                [(-1.5f32).to_le_bytes(), 2.0f32.to_le_bytes()].concat(),
            ),
            (
                FloatDtype::F64,
                [(-1.5f64).to_le_bytes(), 2.0f64.to_le_bytes()].concat(),
            ),
            // f16: -1.5 = 0xBE00, 2.0 = 0x4000.
            (FloatDtype::F16, vec![0x00, 0xBE, 0x00, 0x40]),
            // bf16 is the top half of f32: -1.5 = 0xBFC0, 2.0 = 0x4000.
            (FloatDtype::BF16, vec![0xC0, 0xBF, 0x00, 0x40]),
        ];
        for (dtype, bytes) in cases {
            let (data, note) = float_tensor("w", &bytes, &[2], dtype, ByteOrder::Little).unwrap();
            assert_eq!(data.try_to_vec::<f32>().unwrap(), [-1.5, 2.0], "{dtype:?}");
            assert_eq!(data.shape().to_vec(), [2]);
            assert_eq!(note.is_some(), dtype != FloatDtype::F32, "{dtype:?}");
        }
    }

    #[test]
    fn f64_beyond_f32_range_becomes_infinite() {
        let bytes = 1e300f64.to_le_bytes();
        let (data, _) =
            float_tensor("w", &bytes, &[1], FloatDtype::F64, ByteOrder::Little).unwrap();
        assert_eq!(data.try_to_vec::<f32>().unwrap(), [f32::INFINITY]);
    }

    #[test]
    fn byte_count_must_match_shape() {
        let err =
            float_tensor("w", &[0; 12], &[2, 2], FloatDtype::F32, ByteOrder::Little).unwrap_err();
        assert!(
            err.contains("`w`") && err.contains("[2, 2]") && err.contains("12 bytes"),
            "{err}"
        );
        // A shape whose element count overflows is refused, not wrapped.
        let err = float_tensor(
            "w",
            &[],
            &[usize::MAX, 2],
            FloatDtype::F32,
            ByteOrder::Little,
        )
        .unwrap_err();
        assert!(err.contains("0 bytes"), "{err}");
    }
}
