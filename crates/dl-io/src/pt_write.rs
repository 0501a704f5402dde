//! Writing a state dict as a PyTorch checkpoint, the file `torch.save(model.state_dict(), path)`
//! writes: a zip archive (stored, not compressed) holding `archive/data.pkl`, a protocol-2
//! pickle of an `OrderedDict` whose values are rebuilt by `torch._utils._rebuild_tensor_v2`
//! from `archive/data/<n>` storages, plus the `archive/byteorder` and `archive/version`
//! records. The pickle uses only what PyTorch's `weights_only=True` loader (its default since
//! 2.6) allows: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and
//! `torch.FloatStorage`.

use std::path::Path;

use burn::tensor::TensorData;

use crate::error::{Error, Result};
use crate::state_dict::StateDict;
use crate::write::{f32_values, write_atomically};

/// The folder inside the archive; PyTorch's reader accepts any single top-level name.
const ARCHIVE: &str = "archive";

/// PyTorch aligns each storage record to 64 bytes (so that `torch.load(mmap=True)` can map
/// it); we do the same with a padding extra field, as PyTorch's writer does.
const ALIGNMENT: usize = 64;

impl StateDict {
    /// The state dict as the bytes of a PyTorch checkpoint (`torch.save` zip format); every
    /// tensor as f32, contiguous, under its key. Errors name [`StateDict::source`].
    ///
    /// ```
    /// use burn::tensor::TensorData;
    /// let mut state = dl_io::StateDict::new("mem");
    /// state.insert("fc.weight", TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]));
    /// let bytes = state.to_pytorch_bytes()?;
    /// assert_eq!(&bytes[..4], b"PK\x03\x04"); // a zip archive, as torch.save writes
    /// # Ok::<(), dl_io::Error>(())
    /// ```
    pub fn to_pytorch_bytes(&self) -> Result<Vec<u8>> {
        self.serialize_pytorch(&self.source)
    }

    /// Write the state dict to `path` as a PyTorch checkpoint that
    /// `model.load_state_dict(torch.load(path))` accepts (PyTorch 1.6 and later, with or
    /// without `weights_only=True`). Tensors are written as f32 under the state dict's keys,
    /// as [`write_safetensors`](StateDict::write_safetensors) does: f64, f16 and bf16 are
    /// converted, an integer or boolean tensor is [`Error::UnsupportedDtype`].
    ///
    /// The write is atomic (temporary file, `fsync`, rename): on any error an existing file
    /// at `path` is left as it was.
    ///
    /// ```no_run
    /// let device = dl_core::BackendKind::Flex.device()?;
    /// let model = dl_models::MlpConfig::new().init(&device)?;
    /// dl_io::to_pytorch_state_dict(&model).write_pytorch("mlp.pt")?;
    /// // Python: model.load_state_dict(torch.load("mlp.pt"))
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_pytorch(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.serialize_pytorch(&path.display().to_string())?;
        write_atomically(path, &bytes)
    }

    fn serialize_pytorch(&self, destination: &str) -> Result<Vec<u8>> {
        let mut pickle = Pickle::new();
        let mut storages = Vec::with_capacity(self.tensors.len());
        pickle.global("collections", "OrderedDict");
        pickle.op(EMPTY_TUPLE);
        pickle.op(REDUCE);
        pickle.op(MARK);
        for (key, data) in &self.tensors {
            let values = f32_values(data).ok_or_else(|| Error::UnsupportedDtype {
                path: destination.to_string(),
                key: key.clone(),
                dtype: format!("{:?}", data.dtype()),
            })?;
            pickle.string(key);
            pickle.tensor(storages.len(), data, values.len());
            storages.push(values);
        }
        pickle.op(SETITEMS);
        pickle.op(STOP);

        let mut zip = ZipWriter::default();
        let too_large = |what: &str| Error::Pytorch {
            path: destination.to_string(),
            reason: format!("{what} is over 4 GiB, which this writer (no zip64) cannot store"),
        };
        zip.add(&format!("{ARCHIVE}/data.pkl"), &pickle.bytes)
            .map_err(|()| too_large("the pickle"))?;
        zip.add(&format!("{ARCHIVE}/byteorder"), b"little")
            .map_err(|()| too_large("a record"))?;
        for (index, values) in storages.iter().enumerate() {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            zip.add(&format!("{ARCHIVE}/data/{index}"), &bytes)
                .map_err(|()| too_large(&format!("tensor storage {index}")))?;
        }
        zip.add(&format!("{ARCHIVE}/version"), b"3\n")
            .map_err(|()| too_large("a record"))?;
        zip.finish().map_err(|()| too_large("the archive"))
    }
}

// Pickle opcodes (protocol 2), as named in CPython's `pickle.py`.
const PROTO: u8 = 0x80;
const GLOBAL: u8 = b'c';
const EMPTY_TUPLE: u8 = b')';
const MARK: u8 = b'(';
const TUPLE: u8 = b't';
const REDUCE: u8 = b'R';
const BINPERSID: u8 = b'Q';
const BINUNICODE: u8 = b'X';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG1: u8 = 0x8a;
const NEWFALSE: u8 = 0x89;
const SETITEMS: u8 = b'u';
const STOP: u8 = b'.';

/// A protocol-2 pickle being written.
struct Pickle {
    bytes: Vec<u8>,
}

impl Pickle {
    fn new() -> Self {
        Self {
            bytes: vec![PROTO, 2],
        }
    }

    fn op(&mut self, op: u8) {
        self.bytes.push(op);
    }

    fn global(&mut self, module: &str, name: &str) {
        self.op(GLOBAL);
        self.bytes
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    fn string(&mut self, value: &str) {
        self.op(BINUNICODE);
        // A key is far below 4 GiB; the length field is u32 in protocol 2.
        self.bytes
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
    }

    /// An unsigned integer with the shortest opcode CPython's pickler would pick.
    fn int(&mut self, value: usize) {
        if value < 0x100 {
            self.bytes.extend_from_slice(&[BININT1, value as u8]);
        } else if value < 0x1_0000 {
            self.op(BININT2);
            self.bytes.extend_from_slice(&(value as u16).to_le_bytes());
        } else if value <= i32::MAX as usize {
            self.op(BININT);
            self.bytes.extend_from_slice(&(value as i32).to_le_bytes());
        } else {
            // LONG1: little-endian two's complement; 9 bytes keep any u64 positive.
            self.bytes.extend_from_slice(&[LONG1, 9]);
            self.bytes.extend_from_slice(&(value as u64).to_le_bytes());
            self.bytes.push(0);
        }
    }

    fn int_tuple(&mut self, values: &[usize]) {
        if values.is_empty() {
            self.op(EMPTY_TUPLE);
            return;
        }
        self.op(MARK);
        for &value in values {
            self.int(value);
        }
        self.op(TUPLE);
    }

    /// `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`
    /// for a contiguous f32 tensor in storage record `index` of `numel` elements.
    fn tensor(&mut self, index: usize, data: &TensorData, numel: usize) {
        let shape = data.shape().to_vec();
        let mut stride = vec![1; shape.len()];
        for axis in (0..shape.len().saturating_sub(1)).rev() {
            stride[axis] = stride[axis + 1] * shape[axis + 1];
        }
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.op(MARK);
        // The persistent id ('storage', torch.FloatStorage, key, location, numel).
        self.op(MARK);
        self.string("storage");
        self.global("torch", "FloatStorage");
        self.string(&index.to_string());
        self.string("cpu");
        self.int(numel);
        self.op(TUPLE);
        self.op(BINPERSID);
        self.int(0); // storage offset
        self.int_tuple(&shape);
        self.int_tuple(&stride);
        self.op(NEWFALSE); // requires_grad
        self.global("collections", "OrderedDict"); // backward hooks
        self.op(EMPTY_TUPLE);
        self.op(REDUCE);
        self.op(TUPLE);
        self.op(REDUCE);
    }
}

/// A minimal zip writer: stored (uncompressed) entries, data aligned to [`ALIGNMENT`], no
/// zip64 (every size and offset must fit in 32 bits, which `add` and `finish` check).
#[derive(Default)]
struct ZipWriter {
    out: Vec<u8>,
    central: Vec<u8>,
    entries: u16,
}

/// DOS date 1980-01-01, time 00:00: fixed, so that equal state dicts give equal files.
const DOS_DATE: u16 = (1 << 5) | 1;
/// The extra-field id PyTorch's writer pads with ("FB").
const PADDING_ID: u16 = 0x4246;

impl ZipWriter {
    fn add(&mut self, name: &str, data: &[u8]) -> std::result::Result<(), ()> {
        let offset = u32::try_from(self.out.len()).map_err(|_| ())?;
        let size = u32::try_from(data.len()).map_err(|_| ())?;
        let entries = self.entries.checked_add(1).ok_or(())?;
        let crc = crc32(data);
        // Pad the local header's extra field so that the data starts on the alignment.
        let header_end = self.out.len() + 30 + name.len() + 4;
        let padding = (ALIGNMENT - header_end % ALIGNMENT) % ALIGNMENT;
        let extra_len = 4 + padding;

        let local = &mut self.out;
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        put_common(local, crc, size, name.len(), extra_len);
        local.extend_from_slice(name.as_bytes());
        local.extend_from_slice(&PADDING_ID.to_le_bytes());
        local.extend_from_slice(&(padding as u16).to_le_bytes());
        local.resize(local.len() + padding, 0);
        local.extend_from_slice(data);

        let central = &mut self.central;
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        put_common(central, crc, size, name.len(), 0);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk number
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        self.entries = entries;
        Ok(())
    }

    fn finish(mut self) -> std::result::Result<Vec<u8>, ()> {
        let offset = u32::try_from(self.out.len()).map_err(|_| ())?;
        let size = u32::try_from(self.central.len()).map_err(|_| ())?;
        u32::try_from(self.out.len() + self.central.len() + 22).map_err(|_| ())?;
        self.out.extend_from_slice(&self.central);
        self.out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        self.out.extend_from_slice(&0u16.to_le_bytes()); // this disk
        self.out.extend_from_slice(&0u16.to_le_bytes()); // disk with the directory
        self.out.extend_from_slice(&self.entries.to_le_bytes());
        self.out.extend_from_slice(&self.entries.to_le_bytes());
        self.out.extend_from_slice(&size.to_le_bytes());
        self.out.extend_from_slice(&offset.to_le_bytes());
        self.out.extend_from_slice(&0u16.to_le_bytes()); // comment length
        Ok(self.out)
    }
}

/// The fields a local header and a central-directory entry share, from "version needed".
fn put_common(out: &mut Vec<u8>, crc: u32, size: u32, name_len: usize, extra_len: usize) {
    out.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
    out.extend_from_slice(&0u16.to_le_bytes()); // time
    out.extend_from_slice(&DOS_DATE.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes()); // compressed size
    out.extend_from_slice(&size.to_le_bytes()); // uncompressed size
    out.extend_from_slice(&(name_len as u16).to_le_bytes());
    out.extend_from_slice(&(extra_len as u16).to_le_bytes());
}

/// CRC-32 (IEEE 802.3, reflected, as zip uses).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use burn::tensor::{TensorData, f16};

    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("dl-io-pt-write-{}-{name}", std::process::id()))
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn every_shape_round_trips_through_the_reader() {
        let mut state = StateDict::new("mem");
        state.insert("scalar", TensorData::new(vec![2.5f32], Vec::<usize>::new()));
        state.insert("empty", TensorData::new(Vec::<f32>::new(), [0, 3]));
        let big: Vec<f32> = (0..70_000).map(|i| i as f32 * 0.5).collect();
        state.insert("layer.0.weight", TensorData::new(big, [7, 10_000]));
        state.insert("löwe.bias", TensorData::new(vec![-1.0f32, 0.0, 1.0], [3]));
        state.insert("half", TensorData::new(vec![f16::from_f32(0.25)], [1, 1]));
        let path = temp_path("shapes.pt");
        state.write_pytorch(&path).unwrap();
        let back = StateDict::from_pytorch_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back.len(), state.len());
        for key in state.keys() {
            let expected = state.get(key).unwrap();
            let got = back.get(key).unwrap();
            assert_eq!(got.shape(), expected.shape(), "{key}");
            assert_eq!(
                got.clone().try_into_vec::<f32>().unwrap(),
                f32_values(expected).unwrap(),
                "{key}"
            );
        }
    }

    #[test]
    fn storages_are_aligned_and_files_are_reproducible() {
        let build = || {
            let mut state = StateDict::new("mem");
            state.insert("a", TensorData::new(vec![1.0f32; 5], [5]));
            state.insert("bb", TensorData::new(vec![2.0f32; 3], [3]));
            state
        };
        let bytes = build().to_pytorch_bytes().unwrap();
        // Reproducible: a second state dict built alike gives the same bytes, and another
        // value gives other bytes.
        assert_eq!(bytes, build().to_pytorch_bytes().unwrap());
        let mut other = build();
        other.insert("bb", TensorData::new(vec![3.0f32; 3], [3]));
        assert_ne!(bytes, other.to_pytorch_bytes().unwrap());
        // The first record's data (the pickle) and each storage start on 64 bytes.
        for needle in [&1.0f32.to_le_bytes()[..], &2.0f32.to_le_bytes()[..]] {
            let at = bytes.windows(4).position(|w| w == needle).unwrap();
            assert_eq!(at % ALIGNMENT, 0);
        }
    }

    #[test]
    fn an_integer_tensor_is_refused_and_the_old_file_kept() {
        let path = temp_path("int.pt");
        std::fs::write(&path, b"previous").unwrap();
        let mut state = StateDict::new("mem");
        state.insert("steps", TensorData::new(vec![1i64, 2], [2]));
        let err = state.write_pytorch(&path).unwrap_err();
        assert!(matches!(err, Error::UnsupportedDtype { ref key, .. } if key == "steps"));
        assert_eq!(std::fs::read(&path).unwrap(), b"previous");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn integers_use_the_shortest_opcode() {
        let mut pickle = Pickle::new();
        for value in [7, 300, 70_000, 1 << 33] {
            pickle.int(value);
        }
        let mut expected = vec![PROTO, 2, BININT1, 7, BININT2, 44, 1, BININT];
        expected.extend_from_slice(&70_000i32.to_le_bytes());
        expected.extend_from_slice(&[LONG1, 9]);
        expected.extend_from_slice(&(1u64 << 33).to_le_bytes());
        expected.push(0);
        assert_eq!(pickle.bytes, expected);
    }
}
