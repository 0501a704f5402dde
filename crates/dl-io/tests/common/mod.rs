//! Helpers shared by dl-io's integration tests: fixture paths and hand-built files.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

use dl_core::{Fixture, config_from_case, fixtures_dir};
use dl_models::{CnnConfig, MlpConfig};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A committed `.pt` fixture (made by `fixtures/gen/pt_files.py`).
pub fn pt_fixture(name: &str) -> PathBuf {
    fixtures_dir().join("pt").join(name)
}

/// fixtures/models.safetensors: PyTorch's weights, inputs and logits for the chapter models.
pub fn models() -> Fixture {
    Fixture::open(fixtures_dir().join("models.safetensors")).expect("models fixture")
}

/// The configuration stored for case `name` in models.safetensors.
pub fn case_config(fixture: &Fixture, name: &str) -> serde_json::Value {
    fixture
        .cases()
        .expect("cases")
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .expect("case")
}

/// The `XConfig` of fixture case `name`: `defaults` with every field the case sets.
pub fn fixture_config<C: Serialize + DeserializeOwned>(
    fixture: &Fixture,
    name: &str,
    defaults: C,
) -> C {
    config_from_case(&defaults, &case_config(fixture, name), &["model"]).expect("a valid config")
}

/// The MLP of the `mlp` case (dropout left at its default: the tests run in eval mode).
pub fn mlp_config(fixture: &Fixture) -> MlpConfig {
    fixture_config(fixture, "mlp", MlpConfig::new())
}

/// The CNN of the `cnn` case.
pub fn cnn_config(fixture: &Fixture) -> CnnConfig {
    fixture_config(fixture, "cnn", CnnConfig::new())
}

/// A small valid safetensors file: one tensor of each float dtype (values exact in all),
/// with metadata, as `safetensors.torch.save_file` would write it.
pub fn valid_safetensors() -> Vec<u8> {
    let values = [-1.5f32, 0.0, 2.0, 3.25];
    let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f64_bytes: Vec<u8> = values
        .iter()
        .flat_map(|v| f64::from(*v).to_le_bytes())
        .collect();
    let f16_bytes: Vec<u8> = values
        .iter()
        .flat_map(|v| burn::tensor::f16::from_f32(*v).to_le_bytes())
        .collect();
    let bf16_bytes: Vec<u8> = values
        .iter()
        .flat_map(|v| burn::tensor::bf16::from_f32(*v).to_le_bytes())
        .collect();
    let view =
        |dtype, shape: Vec<usize>, bytes| TensorView::new(dtype, shape, bytes).expect("view");
    safetensors::serialize(
        [
            ("fc.weight", view(Dtype::F32, vec![2, 2], &f32_bytes)),
            ("fc.bias", view(Dtype::F64, vec![4], &f64_bytes)),
            ("half", view(Dtype::F16, vec![1, 4], &f16_bytes)),
            ("brain", view(Dtype::BF16, vec![4, 1], &bf16_bytes)),
        ],
        Some([("format".to_string(), "pt".to_string())].into()),
    )
    .expect("serialize")
}

/// A safetensors file made of the given header JSON (padded with spaces to 8 bytes, as the
/// format writes it) and data bytes; the length field is the header's true length.
pub fn safetensors_with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut header = header.as_bytes().to_vec();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend_from_slice(data);
    out
}

/// A zip entry: its name and bytes.
pub type ZipEntry = (String, Vec<u8>);

/// The entries of a zip archive, in order.
pub fn zip_entries(bytes: &[u8]) -> Vec<ZipEntry> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip archive");
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).expect("entry");
            let name = file.name().expect("name").to_string();
            let mut data = Vec::new();
            file.read_to_end(&mut data).expect("entry bytes");
            (name, data)
        })
        .collect()
}

/// A zip archive (stored, uncompressed, as `torch.save` writes) with these entries.
pub fn zip_of(entries: &[ZipEntry]) -> Vec<u8> {
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        writer.start_file(name.as_str(), options).expect("entry");
        writer.write_all(data).expect("write");
    }
    writer.finish().expect("finish").into_inner()
}
