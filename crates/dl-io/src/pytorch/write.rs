//! Writing a state dict as a PyTorch checkpoint, the file `torch.save(model.state_dict(), path)`
//! writes: a zip archive (stored, not compressed) holding `archive/data.pkl`, a protocol-2
//! pickle of an `OrderedDict` whose values are rebuilt by `torch._utils._rebuild_tensor_v2`
//! from `archive/data/<n>` storages, plus the `archive/byteorder` and `archive/version`
//! records. The pickle uses only what PyTorch's `weights_only=True` loader (its default since
//! 2.6) allows: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and
//! `torch.FloatStorage`.
//!
//! The zip container comes from the `zip` crate; the pickle is written here by hand because
//! no maintained crate writes the protocol-2 subset `weights_only=True` accepts.

use std::io::{Cursor, Write};
use std::path::Path;

use burn::tensor::TensorData;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZIP64_BYTES_THR, ZipWriter};

use crate::atomic::write_atomically;
use crate::dtype::f32_values;
use crate::error::{Error, Result};
use crate::state_dict::StateDict;

/// The folder inside the archive; PyTorch's reader accepts any single top-level name.
const ARCHIVE: &str = "archive";

/// PyTorch aligns each storage record to 64 bytes (so that `torch.load(mmap=True)` can map
/// it); we do the same, with the zip crate's padding extra field in the local header.
const ALIGNMENT: u16 = 64;

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
        // Each tensor's storage as little-endian f32 bytes, record `archive/data/<index>`.
        let mut storages: Vec<Vec<u8>> = Vec::with_capacity(self.tensors.len());
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
            storages.push(values.iter().flat_map(|v| v.to_le_bytes()).collect());
        }
        pickle.op(SETITEMS);
        pickle.op(STOP);

        // The records in the order `torch.save` writes them.
        let storage_records = storages
            .iter()
            .enumerate()
            .map(|(index, bytes)| (format!("{ARCHIVE}/data/{index}"), bytes.as_slice()));
        let records = [
            (format!("{ARCHIVE}/data.pkl"), pickle.bytes.as_slice()),
            (format!("{ARCHIVE}/byteorder"), b"little".as_slice()),
        ]
        .into_iter()
        .chain(storage_records)
        .chain([(format!("{ARCHIVE}/version"), b"3\n".as_slice())]);
        zip_archive(records).map_err(|e| Error::Pytorch {
            path: destination.to_string(),
            reason: format!("writing the zip archive: {e}"),
        })
    }
}

/// The options of one record of `len` bytes: stored, aligned to [`ALIGNMENT`], with fixed
/// metadata (timestamp 1980-01-01 00:00, Unix, mode 0644) so that equal state dicts give equal
/// files whatever the machine or the zip crate's features; zip64 sizes for a record of 4 GiB or
/// more (the archive's own zip64 records the crate adds when offsets need them).
fn record_options(len: u64) -> SimpleFileOptions {
    SimpleFileOptions::DEFAULT
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::DEFAULT)
        .system(System::Unix)
        .unix_permissions(0o644)
        .with_alignment(ALIGNMENT)
        .large_file(len >= ZIP64_BYTES_THR)
}

/// A zip archive of `records` (name, bytes), in order, each as [`record_options`] says.
fn zip_archive<'a>(
    records: impl IntoIterator<Item = (String, &'a [u8])>,
) -> zip::result::ZipResult<Vec<u8>> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in records {
        zip.start_file(name, record_options(bytes.len() as u64))?;
        zip.write_all(bytes)?;
    }
    Ok(zip.finish()?.into_inner())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use burn::tensor::{TensorData, f16};

    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("dl-io-pt-write-{}-{name}", std::process::id()))
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
        // Each storage starts on 64 bytes: found by its values in the raw bytes.
        for needle in [&1.0f32.to_le_bytes()[..], &2.0f32.to_le_bytes()[..]] {
            let at = bytes.windows(4).position(|w| w == needle).unwrap();
            assert_eq!(at % usize::from(ALIGNMENT), 0);
        }
    }

    #[test]
    fn records_are_stored_aligned_in_torch_save_order_with_a_fixed_date() {
        let mut state = StateDict::new("mem");
        state.insert("a", TensorData::new(vec![1.0f32; 5], [5]));
        state.insert("layer.weight", TensorData::new(vec![2.0f32; 6], [2, 3]));
        let bytes = state.to_pytorch_bytes().unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
        let names: Vec<String> = (0..archive.len())
            .map(|i| archive.by_index(i).unwrap().name().unwrap().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "archive/data.pkl",
                "archive/byteorder",
                "archive/data/0",
                "archive/data/1",
                "archive/version"
            ]
        );
        for index in 0..archive.len() {
            let record = archive.by_index(index).unwrap();
            let name = record.name().unwrap().into_owned();
            assert_eq!(record.compression(), CompressionMethod::Stored, "{name}");
            let start = record.data_start().unwrap();
            assert_eq!(start % u64::from(ALIGNMENT), 0, "{name} starts at {start}");
            assert_eq!(record.last_modified(), Some(DateTime::DEFAULT), "{name}");
            assert_eq!(record.unix_mode().map(|m| m & 0o777), Some(0o644), "{name}");
        }
        let mut storage = Vec::new();
        std::io::Read::read_to_end(
            &mut archive.by_name("archive/data/1").unwrap(),
            &mut storage,
        )
        .unwrap();
        assert_eq!(storage, [2.0f32.to_le_bytes(); 6].concat());
    }

    #[test]
    fn zip64_sizes_exactly_from_the_32_bit_limit() {
        let small = record_options(0);
        assert_eq!(record_options(u64::from(u32::MAX) - 1), small);
        // 0xFFFFFFFF itself is the marker that says "see the zip64 field".
        assert_eq!(record_options(u64::from(u32::MAX)), small.large_file(true));
        assert_eq!(record_options(5 << 30), small.large_file(true));
        assert_ne!(small, small.large_file(true));
    }

    #[test]
    fn a_zip64_record_reads_back() {
        // What a storage of 4 GiB or more gets, on a small record: the zip64 layout must be
        // one the readers accept.
        let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("archive/data/0", record_options(0).large_file(true))
            .unwrap();
        zip.write_all(&[7u8; 100]).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
        let mut record = archive.by_index(0).unwrap();
        assert_eq!(record.data_start().unwrap() % u64::from(ALIGNMENT), 0);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut record, &mut back).unwrap();
        assert_eq!(back, [7u8; 100]);
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
