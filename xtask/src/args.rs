//! Command lines of the xtask commands whose every option takes a value.

use anyhow::{Context, Result};

/// The `--flag value` pairs of `args`, in order; a flag without a value is an error that shows
/// `usage`. Each command matches the flags it knows and reports the others itself.
pub fn flag_values<'a>(args: &'a [String], usage: &str) -> Result<Vec<(&'a str, &'a str)>> {
    let mut pairs = Vec::new();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n\n{usage}"))?;
        pairs.push((flag.as_str(), value.as_str()));
    }
    Ok(pairs)
}

/// Owned arguments from literals, for the commands' tests.
#[cfg(test)]
pub fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_pair_with_their_values_in_order() {
        let args = strings(&["--out", "/tmp/x", "--model", "mlp"]);
        assert_eq!(
            flag_values(&args, "usage").unwrap(),
            vec![("--out", "/tmp/x"), ("--model", "mlp")]
        );
        assert!(flag_values(&[], "usage").unwrap().is_empty());
    }

    #[test]
    fn a_flag_without_value_names_itself_and_shows_the_usage() {
        let args = strings(&["--out", "/tmp/x", "--model"]);
        let err = flag_values(&args, "cargo xtask thing [--model M]").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--model needs a value\n\ncargo xtask thing [--model M]"
        );
    }
}
