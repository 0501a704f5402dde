//! Fuzz-style property tests: random and mutated bytes thrown at both readers must give `Ok`
//! or `Err`, never a panic (proptest turns a panic into a failure and shrinks the input).
//!
//! Every test runs [`CASES`] inputs; docs/reliability.md records what a run covers and found.
//! When a file does read, the writer is checked on it too: writing, reading back and writing
//! again gives the same bytes.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use dl_io::StateDict;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

mod common;
use common::{
    ZipEntry, pt_fixture, safetensors_with_header, valid_safetensors, zip_entries, zip_of,
};

/// Inputs per test (set explicitly so that `PROPTEST_CASES` cannot silently shrink a run).
const CASES: u32 = 5000;

fn config() -> ProptestConfig {
    ProptestConfig {
        // A failing input is reported by the test itself; no regressions file is written.
        failure_persistence: None,
        ..ProptestConfig::with_cases(CASES)
    }
}

/// A byte-level change to a valid file. Positions are `Index`es, scaled to the file's length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Truncate(Index),
    Overwrite(Index, Vec<u8>),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    /// Replace the first 8 bytes (the safetensors header length) with this value.
    SetLength(u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => prop_oneof![any::<u64>(), 0u64..1024, Just(u64::MAX), Just(1 << 60)]
            .prop_map(Mutation::SetLength),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    if len == 0 {
        return;
    }
    match mutation {
        Mutation::FlipBit(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        Mutation::Truncate(i) => bytes.truncate(i.index(len)),
        Mutation::Overwrite(i, new) => {
            let start = i.index(len);
            for (dst, src) in bytes[start..].iter_mut().zip(new) {
                *dst = *src;
            }
        }
        Mutation::Insert(i, new) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let start = i.index(len);
            bytes.drain(start..(start + n).min(len));
        }
        Mutation::SetLength(value) => {
            for (dst, src) in bytes.iter_mut().zip(value.to_le_bytes()) {
                *dst = src;
            }
        }
    }
}

fn mutated(base: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    mutations.iter().for_each(|m| apply(&mut bytes, m));
    bytes
}

/// What a successful read must satisfy: every tensor's data fits its shape, the finiteness
/// check runs, and writing is stable (write, read back, write: same bytes).
fn check_read(state: &StateDict) {
    for key in state.keys() {
        let data = state.get(key).expect("listed key");
        let values = data.try_to_vec::<f32>().expect("f32 data");
        assert_eq!(
            values.len(),
            data.shape().iter().product::<usize>(),
            "`{key}`"
        );
    }
    let _ = state
        .check_finite(false)
        .expect("non-strict check never fails");
    let bytes = state
        .to_safetensors_bytes()
        .expect("an f32 state dict writes");
    let back = StateDict::from_safetensors_bytes(&bytes, "rewritten").expect("reads back");
    assert_eq!(
        back.to_safetensors_bytes().expect("writes again"),
        bytes,
        "write is not stable"
    );
}

fn read_safetensors(bytes: &[u8]) {
    if let Ok(state) = StateDict::from_safetensors_bytes(bytes, "fuzz.safetensors") {
        check_read(&state);
    }
}

/// A change to the JSON header of a valid safetensors file.
#[derive(Debug, Clone)]
enum HeaderEdit {
    Dtype(Index, &'static str),
    /// Change the dtype and make the shape fit the byte range (`[bytes / size]`), so that
    /// the same bytes are read as another dtype.
    Reinterpret(Index, &'static str, usize),
    Shape(Index, Vec<u64>),
    Offsets(Index, u64, u64),
    RemoveField(Index, &'static str),
    /// Copy a tensor's entry under a new name (two tensors over the same bytes).
    Duplicate(Index),
    /// Replace the metadata with a non-string-valued object.
    Metadata(i64),
}

fn size_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..8,
        0u64..100_000,
        Just(u64::MAX),
        Just(1 << 32),
        any::<u64>()
    ]
}

fn header_edit() -> impl Strategy<Value = HeaderEdit> {
    let dtypes = prop::sample::select(vec![
        "F32", "F64", "F16", "BF16", "I64", "I32", "U8", "BOOL", "F8_E4M3", "F4", "C64", "f32",
    ]);
    let fields = prop::sample::select(vec!["dtype", "shape", "data_offsets"]);
    let sized = prop::sample::select(vec![
        ("F32", 4),
        ("F64", 8),
        ("F16", 2),
        ("BF16", 2),
        ("I16", 2),
        ("U8", 1),
        ("BOOL", 1),
    ]);
    prop_oneof![
        3 => (any::<Index>(), dtypes).prop_map(|(i, d)| HeaderEdit::Dtype(i, d)),
        3 => (any::<Index>(), sized).prop_map(|(i, (d, n))| HeaderEdit::Reinterpret(i, d, n)),
        3 => (any::<Index>(), prop::collection::vec(size_value(), 0..4))
            .prop_map(|(i, s)| HeaderEdit::Shape(i, s)),
        3 => (any::<Index>(), size_value(), size_value())
            .prop_map(|(i, a, b)| HeaderEdit::Offsets(i, a, b)),
        1 => (any::<Index>(), fields).prop_map(|(i, f)| HeaderEdit::RemoveField(i, f)),
        1 => any::<Index>().prop_map(HeaderEdit::Duplicate),
        1 => any::<i64>().prop_map(HeaderEdit::Metadata),
    ]
}

/// The header JSON and data section of `valid_safetensors()`.
fn header_and_data() -> (serde_json::Map<String, Value>, Vec<u8>) {
    let bytes = valid_safetensors();
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("valid header");
    let Value::Object(map) = header else {
        panic!("header is an object")
    };
    (map, bytes[8 + n..].to_vec())
}

fn edit_header(header: &mut serde_json::Map<String, Value>, edit: &HeaderEdit) {
    let names: Vec<String> = header
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let pick = |i: &Index| names[i.index(names.len())].clone();
    match edit {
        HeaderEdit::Dtype(i, dtype) => {
            header[&pick(i)]["dtype"] = Value::from(*dtype);
        }
        HeaderEdit::Reinterpret(i, dtype, size) => {
            let entry = &mut header[&pick(i)];
            let range = entry["data_offsets"]
                .as_array()
                .and_then(|o| o.get(1)?.as_u64()?.checked_sub(o.first()?.as_u64()?))
                .unwrap_or(0);
            entry["dtype"] = Value::from(*dtype);
            entry["shape"] = Value::from(vec![range / *size as u64]);
        }
        HeaderEdit::Shape(i, shape) => {
            header[&pick(i)]["shape"] = Value::from(shape.clone());
        }
        HeaderEdit::Offsets(i, start, end) => {
            header[&pick(i)]["data_offsets"] = Value::from(vec![*start, *end]);
        }
        HeaderEdit::RemoveField(i, field) => {
            if let Some(entry) = header.get_mut(&pick(i)).and_then(Value::as_object_mut) {
                entry.remove(*field);
            }
        }
        HeaderEdit::Duplicate(i) => {
            let name = pick(i);
            let copy = header[&name].clone();
            header.insert(format!("{name}.copy"), copy);
        }
        HeaderEdit::Metadata(value) => {
            header.insert(
                "__metadata__".to_string(),
                serde_json::json!({ "format": value }),
            );
        }
    }
}

/// A unique path in a folder shared by the tests of this binary.
fn temp_path(suffix: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    dir.path().join(format!(
        "case{}{suffix}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Write `bytes` to a file and read it with the PyTorch reader and with `from_file`.
fn read_pt(bytes: &[u8]) {
    let path = temp_path(".pt");
    std::fs::write(&path, bytes).expect("write case");
    if let Ok(state) = StateDict::from_pytorch_file(&path) {
        check_read(&state);
    }
    if let Ok(state) = StateDict::from_file(&path) {
        check_read(&state);
    }
    let _ = std::fs::remove_file(&path);
}

fn pt_bases() -> &'static [Vec<u8>] {
    static BASES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BASES.get_or_init(|| {
        ["mlp.pt", "dtypes.pt", "mlp_legacy.pt"]
            .iter()
            .map(|name| std::fs::read(pt_fixture(name)).expect("pt fixture"))
            .collect()
    })
}

/// The entries of the zip fixtures, to mutate one entry and rebuild a well-formed archive.
fn zip_bases() -> &'static [Vec<ZipEntry>] {
    static BASES: OnceLock<Vec<Vec<ZipEntry>>> = OnceLock::new();
    BASES.get_or_init(|| pt_bases()[..2].iter().map(|b| zip_entries(b)).collect())
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes, half of them behind a plausible header length and `{`.
    #[test]
    fn safetensors_random_bytes(
        plausible in any::<bool>(),
        len in 0u64..512,
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = Vec::new();
        if plausible {
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.push(b'{');
        }
        bytes.extend_from_slice(&body);
        read_safetensors(&bytes);
    }

    /// Bit flips, truncations, overwrites, insertions, removals and length-field edits of a
    /// valid file holding f32, f64, f16 and bf16 tensors.
    #[test]
    fn safetensors_mutations(mutations in prop::collection::vec(mutation(), 1..5)) {
        read_safetensors(&mutated(&valid_safetensors(), &mutations));
    }

    /// Edits of the JSON header (dtypes, shapes, offsets, missing fields, duplicated
    /// entries, metadata), written back with a correct length field, then byte mutations.
    #[test]
    fn safetensors_header_edits(
        edits in prop::collection::vec(header_edit(), 1..3),
        mutation in prop::option::weighted(0.2, mutation()),
    ) {
        let (mut header, data) = header_and_data();
        edits.iter().for_each(|e| edit_header(&mut header, e));
        let text = Value::Object(header).to_string();
        read_safetensors(&mutated(&safetensors_with_header(&text, &data), mutation.as_slice()));
    }

    /// Byte-level mutations of PyTorch checkpoints: two zip files and a legacy pickle file.
    #[test]
    fn pt_mutations(base in any::<Index>(), mutations in prop::collection::vec(mutation(), 1..5)) {
        read_pt(&mutated(base.get::<Vec<u8>>(pt_bases()), &mutations));
    }

    /// Mutations of one entry of a zip checkpoint (the `data.pkl` pickle half the time, else
    /// a storage or text entry), rebuilt into a well-formed archive with correct checksums so
    /// that the pickle parser and storage reads, not the zip layer, see the damage.
    #[test]
    fn pt_entry_mutations(
        base in any::<Index>(),
        pickle in any::<bool>(),
        entry in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut entries = base.get(zip_bases()).clone();
        let target = if pickle {
            entries.iter().position(|(name, _)| name.ends_with("data.pkl")).expect("data.pkl")
        } else {
            entry.index(entries.len())
        };
        let damaged = mutated(&entries[target].1, &mutations);
        entries[target].1 = damaged;
        read_pt(&zip_of(&entries));
    }
}

#[test]
fn the_fuzz_bases_are_valid() {
    // The mutations start from files that read, so they explore the readers' deep paths.
    let state = StateDict::from_safetensors_bytes(&valid_safetensors(), "base").expect("valid");
    check_read(&state);
    for (i, base) in pt_bases().iter().enumerate() {
        let path = temp_path(".pt");
        std::fs::write(&path, base).expect("write");
        let state = StateDict::from_pytorch_file(&path).unwrap_or_else(|e| panic!("base {i}: {e}"));
        check_read(&state);
    }
    for entries in zip_bases() {
        let path = temp_path(".pt");
        std::fs::write(&path, zip_of(entries)).expect("write");
        StateDict::from_pytorch_file(&path).expect("a rebuilt archive reads");
    }
    let (header, data) = header_and_data();
    let text = Value::Object(header).to_string();
    StateDict::from_safetensors_bytes(&safetensors_with_header(&text, &data), "re-headed")
        .expect("a re-serialized header reads");
}
