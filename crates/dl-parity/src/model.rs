//! The models the parity checks cover.

use dl_core::{Error, Result};
use dl_models::ModelKind;

/// The models of the parity table, in table order: every network of [`ModelKind::ALL`] but the
/// forecaster, which has no PyTorch fixture of its own (its `Lstm` is checked in dl-layers').
pub const PARITY_MODELS: [ModelKind; 6] = {
    let mut models = [ModelKind::Mlp; 6];
    let (mut from, mut to) = (0, 0);
    while from < ModelKind::ALL.len() {
        if !matches!(ModelKind::ALL[from], ModelKind::Forecast) {
            models[to] = ModelKind::ALL[from];
            to += 1;
        }
        from += 1;
    }
    models
};

/// Parse a comma-separated list of parity models; `all` means every one.
///
/// ```
/// use dl_parity::{ModelKind, parse_models};
/// assert_eq!(parse_models("mlp,image_cnn").unwrap(), vec![ModelKind::Mlp, ModelKind::ImageCnn]);
/// assert!(parse_models("resnet").is_err());
/// assert!(parse_models("forecast").is_err());
/// ```
pub fn parse_models(list: &str) -> Result<Vec<ModelKind>> {
    if list.trim() == "all" {
        return Ok(PARITY_MODELS.to_vec());
    }
    let expected = || format!("one of {}", PARITY_MODELS.map(|m| m.case_name()).join(", "));
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<ModelKind>() {
            Ok(kind) if PARITY_MODELS.contains(&kind) => Ok(kind),
            _ => Err(Error::invalid("parity model", expected(), s)),
        })
        .collect()
}
