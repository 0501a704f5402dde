//! Broken weight files: each is an error of the right kind naming the file, never a panic,
//! and nothing is allocated from a size field before it is checked against the file.
//!
//! The bad bytes are built here from a valid file (no binary junk is committed). Each case
//! goes through the reader for its format and through `StateDict::from_file`.

use std::path::{Path, PathBuf};

use dl_io::{Error, StateDict};

mod common;
use common::{pt_fixture, safetensors_with_header, valid_safetensors, zip_entries, zip_of};

/// Which error a case must give.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Safetensors,
    Pytorch,
    UnknownFormat,
    UnsupportedDtype,
}

fn kind_of(err: &Error) -> Option<Kind> {
    match err {
        Error::Safetensors { .. } => Some(Kind::Safetensors),
        Error::Pytorch { .. } => Some(Kind::Pytorch),
        Error::UnknownFormat { .. } => Some(Kind::UnknownFormat),
        Error::UnsupportedDtype { .. } => Some(Kind::UnsupportedDtype),
        _ => None,
    }
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, bytes).expect("write test file");
        path
    }
}

/// `result` is an error of `kind` whose message names `path` and contains `detail`.
fn assert_error(result: dl_io::Result<StateDict>, path: &Path, kind: Kind, detail: &str) {
    let err = match result {
        Ok(state) => panic!(
            "{}: expected a {kind:?} error, read {} tensors",
            path.display(),
            state.len()
        ),
        Err(err) => err,
    };
    let text = err.to_string();
    assert!(
        matches!((kind_of(&err), kind), (Some(a), b) if std::mem::discriminant(&a) == std::mem::discriminant(&b)),
        "{}: expected {kind:?}, got {text}",
        path.display()
    );
    assert!(
        text.starts_with(&path.display().to_string()),
        "the message does not name the file: {text}"
    );
    assert!(
        text.to_lowercase().contains(&detail.to_lowercase()),
        "expected `{detail}` in: {text}"
    );
}

/// A safetensors case: the safetensors reader and `from_file` both give `kind`.
fn safetensors_case(name: &str, bytes: &[u8], detail: &str, from_file: Kind) {
    let dir = Dir::new();
    let path = dir.file(name, bytes);
    assert_error(
        StateDict::from_safetensors_file(&path),
        &path,
        Kind::Safetensors,
        detail,
    );
    assert_error(StateDict::from_file(&path), &path, from_file, "");
}

/// A PyTorch case: the PyTorch reader gives `Pytorch`, `from_file` gives `from_file`.
fn pytorch_case(name: &str, bytes: &[u8], detail: &str, from_file: Kind) {
    let dir = Dir::new();
    let path = dir.file(name, bytes);
    assert_error(
        StateDict::from_pytorch_file(&path),
        &path,
        Kind::Pytorch,
        detail,
    );
    assert_error(StateDict::from_file(&path), &path, from_file, "");
}

fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize
}

#[test]
fn valid_file_reads() {
    // The base of the cases below is itself valid.
    // Every tensor, in each dtype, reads back as the same four f32 values in its shape.
    let state = StateDict::from_safetensors_bytes(&valid_safetensors(), "base").expect("valid");
    assert_eq!(state.len(), 4);
    for (key, shape) in [
        ("brain", vec![4, 1]),
        ("fc.bias", vec![4]),
        ("fc.weight", vec![2, 2]),
        ("half", vec![1, 4]),
    ] {
        let data = state.get(key).expect(key);
        assert_eq!(data.shape().to_vec(), shape, "{key}");
        assert_eq!(
            data.clone().try_into_vec::<f32>().expect("f32"),
            [-1.5, 0.0, 2.0, 3.25],
            "{key}"
        );
    }
}

#[test]
fn zero_length() {
    safetensors_case(
        "empty.safetensors",
        b"",
        "header too small",
        Kind::UnknownFormat,
    );
    pytorch_case("empty.pt", b"", "empty", Kind::UnknownFormat);
    let dir = Dir::new();
    let path = dir.file("empty.bin", b"");
    assert_error(
        StateDict::from_file(&path),
        &path,
        Kind::UnknownFormat,
        "empty",
    );
}

#[test]
fn truncated_safetensors() {
    let valid = valid_safetensors();
    // Inside the data: the header promises more bytes than follow.
    safetensors_case(
        "cut_data.safetensors",
        &valid[..valid.len() - 3],
        "incomplete",
        Kind::Safetensors,
    );
    // Inside the header.
    safetensors_case(
        "cut_header.safetensors",
        &valid[..8 + header_len(&valid) / 2],
        "invalid header length",
        Kind::Safetensors,
    );
    // Inside the length field.
    safetensors_case(
        "cut_len.safetensors",
        &valid[..5],
        "header too small",
        Kind::UnknownFormat,
    );
}

#[test]
fn corrupt_header() {
    let valid = valid_safetensors();
    let n = header_len(&valid);
    // Invalid JSON: the header's closing brace replaced.
    let mut bad_json = valid.clone();
    let close = bad_json[8..8 + n]
        .iter()
        .rposition(|&b| b == b'}')
        .expect("closing brace");
    bad_json[8 + close] = b',';
    safetensors_case(
        "bad_json.safetensors",
        &bad_json,
        "invalid JSON",
        Kind::Safetensors,
    );
    // Not UTF-8.
    let mut not_utf8 = valid.clone();
    not_utf8[9] = 0xff;
    safetensors_case(
        "not_utf8.safetensors",
        &not_utf8,
        "UTF-8",
        Kind::Safetensors,
    );
    // JSON, but not the object of tensors the format needs.
    safetensors_case(
        "array.safetensors",
        &safetensors_with_header("[1, 2, 3]", &[]),
        "JSON",
        Kind::UnknownFormat,
    );
    safetensors_case(
        "no_dtype.safetensors",
        &safetensors_with_header(r#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]),
        "JSON",
        Kind::Safetensors,
    );
    safetensors_case(
        "unknown_dtype.safetensors",
        &safetensors_with_header(
            r#"{"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#,
            &[0; 4],
        ),
        "JSON",
        Kind::Safetensors,
    );
}

#[test]
fn oversized_header_length_is_refused_without_allocating() {
    // 2^60 bytes of header: an allocation of that size would abort the test process, so
    // getting an error back shows the length was checked first (safetensors 0.8.0 compares it
    // with its 100 MB limit and with the buffer before reading, see `read_metadata`).
    let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
    bytes.extend_from_slice(br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#);
    safetensors_case(
        "huge_len.safetensors",
        &bytes,
        "header too large",
        Kind::Safetensors,
    );
    // u64::MAX does not fit in 100 MB either.
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.push(b'{');
    safetensors_case(
        "max_len.safetensors",
        &bytes,
        "header too large",
        Kind::Safetensors,
    );
    // A plausible length (1 MB) beyond the end of a small file.
    let mut bytes = (1u64 << 20).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    safetensors_case(
        "long_len.safetensors",
        &bytes,
        "invalid header length",
        Kind::Safetensors,
    );
}

#[test]
fn bad_offsets() {
    let case = |name: &str, header: &str, data_len: usize, detail: &str| {
        safetensors_case(
            name,
            &safetensors_with_header(header, &vec![0u8; data_len]),
            detail,
            Kind::Safetensors,
        );
    };
    // Two tensors sharing bytes 8..16.
    case(
        "overlap.safetensors",
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
        24,
        "invalid offset",
    );
    // A gap between tensors.
    case(
        "gap.safetensors",
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
        12,
        "invalid offset",
    );
    // End before start.
    case(
        "reversed.safetensors",
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#,
        4,
        "invalid offset",
    );
    // Past the end of the file.
    case(
        "past_end.safetensors",
        r#"{"a":{"dtype":"F32","shape":[1024],"data_offsets":[0,4096]}}"#,
        16,
        "incomplete",
    );
    // Offsets at the limit of u64.
    case(
        "u64_max.safetensors",
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#,
        4,
        "",
    );
    // Range and shape disagree (4 bytes for 2 f32).
    case(
        "short_range.safetensors",
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
        4,
        "",
    );
    // A shape whose element count overflows.
    case(
        "overflow.safetensors",
        r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}"#,
        4,
        "overflow",
    );
    // Data left over after the last tensor.
    case(
        "trailing.safetensors",
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        12,
        "incomplete",
    );
}

#[test]
fn integer_dtype_in_safetensors() {
    let dir = Dir::new();
    let path = dir.file(
        "int.safetensors",
        &safetensors_with_header(
            r#"{"n":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
            &[0; 8],
        ),
    );
    assert_error(
        StateDict::from_file(&path),
        &path,
        Kind::UnsupportedDtype,
        "`n` has dtype I64",
    );
}

#[test]
fn wrong_magic_and_random_bytes() {
    // Deterministic "random" bytes (SplitMix64 stream) and some readable junk.
    let mut rng = dl_core::SeededRng::new(7);
    let random: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    for (name, bytes) in [
        ("random.bin", random.as_slice()),
        (
            "text.safetensors",
            b"this is not a weight file at all".as_slice(),
        ),
        ("gzip.pt", &[0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0][..]),
        ("png.pth", &b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..]),
    ] {
        let dir = Dir::new();
        let path = dir.file(name, bytes);
        assert_error(
            StateDict::from_file(&path),
            &path,
            Kind::UnknownFormat,
            "starts with bytes",
        );
        assert_error(
            StateDict::from_safetensors_file(&path),
            &path,
            Kind::Safetensors,
            "",
        );
        assert_error(
            StateDict::from_pytorch_file(&path),
            &path,
            Kind::Pytorch,
            "",
        );
    }
}

#[test]
fn non_zip_pt() {
    pytorch_case(
        "notes.pt",
        b"weights: see the README\n",
        "not a PyTorch checkpoint",
        Kind::UnknownFormat,
    );
}

#[test]
fn zip_that_is_not_a_pytorch_archive() {
    let zip = zip_of(&[("readme.txt".to_string(), b"hello".to_vec())]);
    pytorch_case("archive.pt", &zip, "data.pkl", Kind::Pytorch);
}

#[test]
fn pytorch_archive_with_a_missing_storage() {
    let entries: Vec<_> = zip_entries(&std::fs::read(pt_fixture("mlp.pt")).expect("fixture"))
        .into_iter()
        .filter(|(name, _)| !name.ends_with("/data/3"))
        .collect();
    pytorch_case("missing_storage.pt", &zip_of(&entries), "", Kind::Pytorch);
}

#[test]
fn pytorch_archive_with_a_corrupt_pickle() {
    let mut entries = zip_entries(&std::fs::read(pt_fixture("mlp.pt")).expect("fixture"));
    let pickle = entries
        .iter_mut()
        .find(|(name, _)| name.ends_with("data.pkl"))
        .expect("data.pkl");
    pickle.1.truncate(pickle.1.len() / 2);
    pytorch_case("half_pickle.pt", &zip_of(&entries), "", Kind::Pytorch);
}

#[test]
fn truncated_pt() {
    let valid = std::fs::read(pt_fixture("mlp.pt")).expect("fixture");
    // The zip directory is at the end: cutting it leaves local headers only.
    pytorch_case("cut.pt", &valid[..valid.len() / 2], "", Kind::Pytorch);
    let legacy = std::fs::read(pt_fixture("mlp_legacy.pt")).expect("fixture");
    pytorch_case(
        "cut_legacy.pt",
        &legacy[..legacy.len() - 100],
        "",
        Kind::Pytorch,
    );
}

#[test]
fn broadcast_view_larger_than_the_file_is_refused_before_reading() {
    // `torch.zeros(1).expand(100_000)` keeps a 4-byte storage; materializing the view would
    // take 400 KB from a 1.6 KB file.
    let path = pt_fixture("expanded.pt");
    assert_error(
        StateDict::from_pytorch_file(&path),
        &path,
        Kind::Pytorch,
        "needs more bytes than the whole file holds",
    );
}
