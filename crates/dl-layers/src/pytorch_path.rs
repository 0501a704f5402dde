//! The one place that turns a Burn module path into PyTorch's parameter name.
//!
//! Burn walks a module ([`ModuleVisitor`](burn::module::ModuleVisitor) or
//! [`ModuleMapper`](burn::module::ModuleMapper)) calling `enter_module(field, container)` for
//! every field, parameters included, so when a parameter is reached the stack holds each field
//! name on its path together with the type of the struct (or `Vec`) that holds it. The rules
//! that make PyTorch's name out of that, for every layer of this crate and the Burn layers it
//! uses, are here and nowhere else:
//!
//! | container | Burn field | PyTorch name | layout |
//! |---|---|---|---|
//! | Burn `Linear` | `weight` `[in, out]` | `weight` `[out, in]` | transposed |
//! | Burn `LayerNorm`, `BatchNorm` | `gamma`, `beta` | `weight`, `bias` | same |
//! | [`FeedForward`](crate::FeedForward) | `linear1`, `linear2` | `0`, `3` (the chapter's `nn.Sequential`) | same |
//! | [`Lstm`](crate::Lstm) | `layers.{k}.weight_ih` | `weight_ih_l{k}` | same |
//! | [`Lstm`](crate::Lstm) | `reverse_layers.{k}.weight_ih` | `weight_ih_l{k}_reverse` | same |
//!
//! Every other field keeps its name. A model whose PyTorch version numbers its layers
//! differently (an `nn.Sequential`) renames the result once more with a key layout in `dl-io`;
//! a new layer whose PyTorch names differ from its fields adds its row here.

/// The module path of the parameter being visited, and its PyTorch name.
///
/// ```
/// use dl_layers::PytorchPath;
///
/// let mut path = PytorchPath::default();
/// for (field, container) in [
///     ("lstm", "Struct:LstmClassifier"),
///     ("reverse_layers", "Struct:Lstm"),
///     ("1", "Vec"),
///     ("weight_hh", "Struct:LstmLayer"),
/// ] {
///     path.enter(field, container);
/// }
/// assert_eq!(path.burn_path(), "lstm.reverse_layers.1.weight_hh");
/// assert_eq!(path.pytorch_name(), ("lstm.weight_hh_l1_reverse".to_string(), false));
///
/// path.exit();
/// path.exit();
/// path.exit();
/// path.enter("fc", "Struct:LstmClassifier");
/// path.enter("weight", "Struct:Linear");
/// assert_eq!(path.pytorch_name(), ("lstm.fc.weight".to_string(), true));
/// ```
#[derive(Debug, Clone, Default)]
pub struct PytorchPath {
    stack: Vec<(String, String)>,
}

impl PytorchPath {
    /// Burn entered field `name` of a `container` (`"Struct:Linear"`, `"Vec"`, ...).
    pub fn enter(&mut self, name: &str, container: &str) {
        self.stack.push((name.to_string(), container.to_string()));
    }

    /// Burn left the innermost field.
    pub fn exit(&mut self) {
        self.stack.pop();
    }

    /// The path as Burn names it: `transformer_blocks.0.norm1.gamma`.
    pub fn burn_path(&self) -> String {
        let names: Vec<&str> = self.stack.iter().map(|(name, _)| name.as_str()).collect();
        names.join(".")
    }

    /// PyTorch's name of the parameter at the top of the stack, and whether Burn stores it
    /// as the transpose of PyTorch's tensor.
    pub fn pytorch_name(&self) -> (String, bool) {
        let mut parts: Vec<String> = Vec::with_capacity(self.stack.len());
        let mut transposed = false;
        // Inside `Lstm::layers` / `reverse_layers`: the suffix's direction, then its layer.
        let mut lstm_direction: Option<&str> = None;
        let mut lstm_layer: Option<&str> = None;
        for (name, container) in &self.stack {
            match (container.as_str(), name.as_str()) {
                ("Struct:Linear", "weight") => {
                    transposed = true;
                    parts.push("weight".into());
                }
                ("Struct:LayerNorm" | "Struct:BatchNorm", "gamma") => parts.push("weight".into()),
                ("Struct:LayerNorm" | "Struct:BatchNorm", "beta") => parts.push("bias".into()),
                ("Struct:FeedForward", "linear1") => parts.push("0".into()),
                ("Struct:FeedForward", "linear2") => parts.push("3".into()),
                ("Struct:Lstm", "layers") => lstm_direction = Some(""),
                ("Struct:Lstm", "reverse_layers") => lstm_direction = Some("_reverse"),
                ("Vec", index) if lstm_direction.is_some() && lstm_layer.is_none() => {
                    lstm_layer = Some(index);
                }
                ("Struct:LstmLayer", param) => {
                    let k = lstm_layer.unwrap_or("0");
                    let reverse = lstm_direction.unwrap_or("");
                    parts.push(format!("{param}_l{k}{reverse}"));
                }
                (_, other) => parts.push(other.to_string()),
            }
        }
        (parts.join("."), transposed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(path: &[(&str, &str)]) -> (String, bool) {
        let mut p = PytorchPath::default();
        for (field, container) in path {
            p.enter(field, container);
        }
        p.pytorch_name()
    }

    #[test]
    fn renames_only_what_pytorch_names_differently() {
        assert_eq!(
            name_of(&[("fc1", "Struct:Cnn"), ("bias", "Struct:Linear")]),
            ("fc1.bias".into(), false)
        );
        assert_eq!(
            name_of(&[
                ("transformer_blocks", "Struct:TransformerClassifier"),
                ("1", "Vec"),
                ("norm2", "Struct:TransformerBlock"),
                ("beta", "Struct:LayerNorm"),
            ]),
            ("transformer_blocks.1.norm2.bias".into(), false)
        );
        assert_eq!(
            name_of(&[
                ("feed_forward", "Struct:TransformerBlock"),
                ("linear2", "Struct:FeedForward"),
                ("weight", "Struct:Linear"),
            ]),
            ("feed_forward.3.weight".into(), true)
        );
        assert_eq!(
            name_of(&[("bn", "Struct:ConvBlock"), ("gamma", "Struct:BatchNorm")]),
            ("bn.weight".into(), false)
        );
        assert_eq!(
            name_of(&[
                ("layers", "Struct:Lstm"),
                ("2", "Vec"),
                ("bias_ih", "Struct:LstmLayer")
            ]),
            ("bias_ih_l2".into(), false)
        );
        // An `Mlp`'s `layers` is not an LSTM's: its index stays a path segment.
        assert_eq!(
            name_of(&[
                ("layers", "Struct:Mlp"),
                ("2", "Vec"),
                ("weight", "Struct:Linear")
            ]),
            ("layers.2.weight".into(), true)
        );
    }

    #[test]
    fn exit_pops_one_field() {
        let mut p = PytorchPath::default();
        p.enter("a", "Struct:X");
        p.enter("b", "Struct:Y");
        p.exit();
        p.enter("c", "Struct:Y");
        assert_eq!(p.burn_path(), "a.c");
    }
}
