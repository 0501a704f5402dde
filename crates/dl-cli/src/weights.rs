//! Plain weight files for `dl info` and `dl convert`: a PyTorch state dict (`.pt`/`.pth`, zip
//! or legacy pickle), a safetensors file or an ONNX model's initializers, with the keys
//! renamed as asked and the network recognised from the shapes (dl-io's inference).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use dl_io::{InferOptions, StateDict};

use crate::cli::InferArgs;

/// A weights file read into a state dict.
#[derive(Debug)]
pub struct Weights {
    /// The tensors, keys renamed.
    pub state: StateDict,
    /// What the file is, in words.
    pub format: &'static str,
}

/// Read `path` and rename its keys by `args` (`--strip-prefix`, then each `--remap`).
pub fn read(path: &Path, args: &InferArgs) -> Result<Weights> {
    if !path.exists() {
        bail!("input file {} does not exist", path.display());
    }
    let is_onnx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    let (state, format) = if is_onnx {
        (
            StateDict::from_onnx_file(path)?,
            "ONNX model (initializers)",
        )
    } else {
        let format = if starts_like_safetensors(path)? {
            "safetensors"
        } else {
            "PyTorch torch.save checkpoint"
        };
        (StateDict::from_file(path)?, format)
    };
    let rules = rename_rules(args)?;
    let state = if rules.is_empty() {
        state
    } else {
        state.remap_keys(&rules)?
    };
    Ok(Weights { state, format })
}

/// An 8-byte length then `{`: the start of a safetensors header (only for naming the format;
/// dl-io decides how to read the file).
fn starts_like_safetensors(path: &Path) -> Result<bool> {
    let mut head = Vec::with_capacity(9);
    std::fs::File::open(path)
        .and_then(|f| f.take(9).read_to_end(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(head.get(8) == Some(&b'{'))
}

/// `--strip-prefix P` as the rule `^P` -> ``, then each `--remap REGEX=REPLACEMENT`.
pub fn rename_rules(args: &InferArgs) -> Result<Vec<(String, String)>> {
    let mut rules = Vec::new();
    if let Some(prefix) = &args.strip_prefix {
        if prefix.is_empty() {
            bail!("--strip-prefix is empty: expected the prefix to remove, such as `module.`");
        }
        rules.push((format!("^{}", escape_regex(prefix)), String::new()));
    }
    for rule in &args.remap {
        let Some((pattern, replacement)) = rule.split_once('=') else {
            bail!(
                "--remap `{rule}`: expected REGEX=REPLACEMENT, such as '^model\\.=' or 'encoder=backbone'"
            );
        };
        rules.push((pattern.to_string(), replacement.to_string()));
    }
    Ok(rules)
}

/// `text` with every regular-expression metacharacter escaped.
fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The inference options of `args`.
pub fn infer_options(args: &InferArgs) -> InferOptions {
    InferOptions {
        n_heads: args.heads,
        dropout: args.dropout,
        max_seq_length: args.max_seq_length,
        norm_first: args.norm_first.then_some(true),
        image_size: args.image_size,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn strip_prefix_is_a_literal_anchored_rule() {
        let args = InferArgs {
            strip_prefix: Some("module.".into()),
            remap: vec!["^enc\\.=encoder.".into()],
            ..Default::default()
        };
        assert_eq!(
            rename_rules(&args).unwrap(),
            [
                ("^module\\.".to_string(), String::new()),
                ("^enc\\.".to_string(), "encoder.".to_string())
            ]
        );
        let bad = InferArgs {
            remap: vec!["no-equals".into()],
            ..Default::default()
        };
        let err = rename_rules(&bad).unwrap_err().to_string();
        assert!(
            err.contains("--remap `no-equals`: expected REGEX=REPLACEMENT"),
            "{err}"
        );
    }
}
