//! The run history: one JSON line per run of `cargo xtask bench`, appended, never rewritten.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::schema::{RunResults, SCHEMA_VERSION};

/// Append `run` as one line to the JSON-lines file at `path`, creating it and its folder.
pub fn append(path: &Path, run: &RunResults) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let line = serde_json::to_string(run).map_err(io::Error::other)?;
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    // One write per line, so a concurrent reader never sees half a record.
    file.write_all(format!("{line}\n").as_bytes())
}

/// Every run in the file (none when it does not exist), oldest first. Lines of another schema
/// version or that do not parse are skipped, and counted in the second value, so an old
/// history never stops the dashboard.
pub fn read(path: &Path) -> io::Result<(Vec<RunResults>, usize)> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut runs = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<RunResults>(line) {
            Ok(run) if run.schema == SCHEMA_VERSION => runs.push(run),
            _ => skipped += 1,
        }
    }
    Ok((runs, skipped))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::report::tests::sample_results;

    #[test]
    fn append_adds_one_line_per_run_and_read_returns_them_in_order() {
        let dir = std::env::temp_dir().join(format!("dl-bench-history-{}", std::process::id()));
        let path = dir.join("nested/history.jsonl");
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(read(&path).unwrap().0.len(), 0);
        append(&path, &sample_results(100, 1.0)).unwrap();
        append(&path, &sample_results(200, 2.0)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        // A stray line (an older schema, a merge conflict) is skipped, not fatal.
        fs::write(&path, format!("{text}not json\n")).unwrap();
        let (runs, skipped) = read(&path).unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(
            runs.iter().map(|r| r.unix_time).collect::<Vec<_>>(),
            [100, 200]
        );
        assert_eq!(runs[0], sample_results(100, 1.0));
        fs::remove_dir_all(&dir).unwrap();
    }
}
