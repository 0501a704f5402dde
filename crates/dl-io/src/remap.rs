//! Renaming a state dict's keys with regular expressions, for checkpoints whose names differ
//! from the model's (`module.` from `nn.DataParallel`, `model.` from a training framework).

use std::collections::BTreeMap;

use regex::Regex;

use crate::error::{Error, Result};
use crate::state_dict::StateDict;

impl StateDict {
    /// The same tensors with their keys rewritten by `rules`, `(pattern, replacement)` pairs
    /// applied in order, each to the result of the one before, like Python's
    /// `re.sub(pattern, replacement, key)`: every match is replaced, and the replacement may
    /// name groups (`$1`, `${name}`; `$$` is a literal `$`).
    ///
    /// A pattern that is not a valid regular expression is [`Error::InvalidPattern`]; two keys
    /// that end up with the same name are [`Error::KeyCollision`] naming both, and a key that
    /// ends up empty is [`Error::EmptyKey`]. A note records how many keys changed.
    ///
    /// ```
    /// use burn::tensor::TensorData;
    /// let mut state = dl_io::StateDict::new("ddp.pt");
    /// state.insert("module.fc.weight", TensorData::new(vec![1.0f32], [1, 1]));
    /// state.insert("module.fc.bias", TensorData::new(vec![0.0f32], [1]));
    /// // `nn.DataParallel` prefixes every key with `module.`:
    /// let state = state.remap_keys(&[("^module\\.", "")])?;
    /// assert_eq!(state.keys().collect::<Vec<_>>(), ["fc.bias", "fc.weight"]);
    /// // Groups: `layers.3.weight` -> `layers_3.weight`.
    /// let mut named = dl_io::StateDict::new("x");
    /// named.insert("layers.3.weight", TensorData::new(vec![1.0f32], [1]));
    /// let named = named.remap_keys(&[(r"^layers\.(\d+)\.", "layers_$1.")])?;
    /// assert!(named.get("layers_3.weight").is_some());
    /// # Ok::<(), dl_io::Error>(())
    /// ```
    pub fn remap_keys<P: AsRef<str>, R: AsRef<str>>(&self, rules: &[(P, R)]) -> Result<StateDict> {
        let compiled = rules
            .iter()
            .map(|(pattern, replacement)| {
                let pattern = pattern.as_ref();
                Regex::new(pattern)
                    .map(|re| (re, replacement.as_ref()))
                    .map_err(|e| Error::InvalidPattern {
                        pattern: pattern.to_string(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;

        // New key -> original key, to name both sides of a collision.
        let mut origin: BTreeMap<String, &str> = BTreeMap::new();
        let mut tensors = BTreeMap::new();
        let mut file_dtypes = BTreeMap::new();
        let mut renamed = 0usize;
        for (key, data) in &self.tensors {
            let mut new_key = key.clone();
            for (re, replacement) in &compiled {
                new_key = re.replace_all(&new_key, *replacement).into_owned();
            }
            if new_key.is_empty() {
                return Err(Error::EmptyKey {
                    path: self.source.clone(),
                    key: key.clone(),
                });
            }
            if let Some(first) = origin.get(&new_key) {
                return Err(Error::KeyCollision {
                    path: self.source.clone(),
                    key: new_key,
                    first: (*first).to_string(),
                    second: key.clone(),
                });
            }
            if new_key != *key {
                renamed += 1;
            }
            if let Some(dtype) = self.file_dtypes.get(key) {
                file_dtypes.insert(new_key.clone(), *dtype);
            }
            origin.insert(new_key.clone(), key);
            tensors.insert(new_key, data.clone());
        }

        let mut notes = self.notes.clone();
        if renamed > 0 {
            let rules: Vec<String> = rules
                .iter()
                .map(|(p, r)| format!("`{}` -> `{}`", p.as_ref(), r.as_ref()))
                .collect();
            notes.push(format!(
                "renamed {renamed} of {} keys by {}",
                self.tensors.len(),
                rules.join(", ")
            ));
        }
        Ok(StateDict {
            source: self.source.clone(),
            tensors,
            notes,
            file_dtypes,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    fn state(keys: &[&str]) -> StateDict {
        let mut state = StateDict::new("ckpt.pt");
        for (i, key) in keys.iter().enumerate() {
            state.insert(*key, TensorData::new(vec![i as f32], [1]));
        }
        state
    }

    #[test]
    fn rules_apply_in_order_and_keep_the_tensors() {
        let state = state(&["module.encoder.fc.weight", "module.head.bias", "step_scale"]);
        let out = state
            .remap_keys(&[("^module\\.", ""), ("^encoder\\.", "backbone.")])
            .unwrap();
        assert_eq!(
            out.keys().collect::<Vec<_>>(),
            ["backbone.fc.weight", "head.bias", "step_scale"]
        );
        // The tensors travel with their keys: "module.encoder.fc.weight" was inserted first.
        assert_eq!(
            out.get("backbone.fc.weight")
                .unwrap()
                .try_to_vec::<f32>()
                .unwrap(),
            [0.0]
        );
        assert_eq!(
            out.get("step_scale").unwrap().try_to_vec::<f32>().unwrap(),
            [2.0]
        );
        assert_eq!(out.source(), "ckpt.pt");
        assert_eq!(
            out.notes(),
            ["renamed 2 of 3 keys by `^module\\.` -> ``, `^encoder\\.` -> `backbone.`"]
        );
    }

    #[test]
    fn no_match_changes_nothing_and_adds_no_note() {
        let state = state(&["fc.weight"]);
        let out = state.remap_keys(&[("^module\\.", "")]).unwrap();
        assert_eq!(out.keys().collect::<Vec<_>>(), ["fc.weight"]);
        assert!(out.notes().is_empty());
        let empty: [(&str, &str); 0] = [];
        assert_eq!(state.remap_keys(&empty).unwrap().len(), 1);
    }

    #[test]
    fn invalid_pattern_is_named() {
        let err = state(&["a"]).remap_keys(&[("(unclosed", "")]).unwrap_err();
        assert!(matches!(&err, Error::InvalidPattern { pattern, .. } if pattern == "(unclosed"));
        assert!(err.to_string().contains("`(unclosed`"), "{err}");
    }

    #[test]
    fn collisions_name_both_keys() {
        let err = state(&["module.fc.weight", "fc.weight"])
            .remap_keys(&[("^module\\.", "")])
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, Error::KeyCollision { key, first, second, .. }
                if key == "fc.weight" && first == "fc.weight" && second == "module.fc.weight"),
            "{text}"
        );
        assert!(text.starts_with("ckpt.pt: "), "{text}");
    }

    #[test]
    fn empty_names_are_refused() {
        let err = state(&["module."])
            .remap_keys(&[("^module\\.", "")])
            .unwrap_err();
        assert!(
            matches!(&err, Error::EmptyKey { key, .. } if key == "module."),
            "{err}"
        );
    }
}
