//! Atomic file writes: a temporary file beside the destination, synced and renamed over it.
//! Every file dl-io, the `dl` program and `cargo xtask` write goes through here.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::path::Path;

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// The folder `path` is in: `.` for a bare file name.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A failed atomic write: the file it concerns and the operating system's error. The only way
/// [`write_atomically`] fails, so each crate error type converts it without a catch-all.
#[derive(Debug)]
pub(crate) struct IoFailure {
    pub(crate) path: String,
    pub(crate) source: std::io::Error,
}

impl From<IoFailure> for Error {
    fn from(IoFailure { path, source }: IoFailure) -> Self {
        Error::Io { path, source }
    }
}

/// A new temporary file beside `path`, named `.NAME.XXXXXX.tmp` (so that a leftover from a
/// killed process is recognisable), removed when dropped unless persisted. It is created with
/// the mode an ordinary new file gets (`0o666` less the umask), not tempfile's private
/// `0o600`, since it becomes the destination file.
fn temp_beside(path: &Path, file_name: &OsStr) -> std::io::Result<NamedTempFile> {
    let mut prefix = OsString::from(".");
    prefix.push(file_name);
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(folder_of(path))
}

/// Write `bytes` to `path` atomically: to a new temporary file beside it
/// (`.NAME.XXXXXX.tmp`, made by `tempfile`), flushed to disk (`fsync`), renamed over `path`,
/// and the folder synced so that the rename itself survives a crash (best effort: the file is
/// complete and in place by then). A reader sees the old file or the new one, never a part; on
/// any error the temporary file is removed, an existing `path` is left as it was, and the error
/// names `path`. Every file that dl-io, the `dl` program and `cargo xtask` write goes through
/// this.
///
/// ```
/// let path = std::env::temp_dir().join(format!("dl-io-doc-{}.txt", std::process::id()));
/// dl_io::write_atomically(&path, b"epoch 3")?;
/// assert_eq!(std::fs::read(&path).unwrap(), b"epoch 3");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), dl_io::Error>(())
/// ```
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(write_atomically_io(path, bytes)?)
}

/// [`write_atomically`] with its one kind of failure, for the crate's other error types.
pub(crate) fn write_atomically_io(path: &Path, bytes: &[u8]) -> std::result::Result<(), IoFailure> {
    // The temporary name means nothing to the caller: every failure names the destination.
    let io = |source| IoFailure {
        path: path.display().to_string(),
        source,
    };
    let Some(file_name) = path.file_name() else {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )));
    };
    let mut temp = temp_beside(path, file_name).map_err(io)?;
    temp.write_all(bytes).map_err(io)?;
    temp.as_file().sync_all().map_err(io)?;
    // On failure the `PersistError` hands the temporary file back; dropping it removes it.
    temp.persist(path).map_err(|e| io(e.error))?;
    if let Ok(dir) = File::open(folder_of(path)) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs;

    use super::*;

    /// A fresh empty folder under the system's temporary folder, removed when dropped.
    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn temporary_files_go_beside_the_destination_and_go_away() {
        assert_eq!(folder_of(Path::new("model.safetensors")), Path::new("."));
        assert_eq!(
            folder_of(Path::new("out/model.safetensors")),
            Path::new("out")
        );
        let dir = scratch();
        let dest = dir.path().join("probe.bin");
        let temp = temp_beside(&dest, OsStr::new("probe.bin")).unwrap();
        assert_eq!(temp.path().parent(), Some(dir.path()));
        let name = temp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(".probe.bin.") && name.ends_with(".tmp"),
            "{name}"
        );
        let path = temp.path().to_path_buf();
        assert!(path.exists());
        drop(temp); // not persisted: removed
        assert!(!path.exists());
    }

    #[test]
    fn a_write_replaces_the_file_and_leaves_nothing_else() {
        let dir = scratch();
        let path = dir.path().join("metrics.csv");
        fs::write(&path, b"old contents, longer than the new").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        write_atomically(&path, b"").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(listing(dir.path()), ["metrics.csv"]);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_gets_the_mode_of_an_ordinary_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch();
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        let atomic = dir.path().join("atomic");
        write_atomically(&atomic, b"x").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // Not tempfile's owner-only 0o600: others may read what `dl` writes, as before.
        assert_eq!(mode(&atomic), mode(&plain));
    }

    #[test]
    fn a_failed_rename_keeps_the_destination_and_removes_the_temporary_file() {
        let dir = scratch();
        // A non-empty folder cannot be replaced by a file: the rename fails after the
        // temporary file was written and synced.
        let taken = dir.path().join("taken");
        fs::create_dir(&taken).unwrap();
        fs::write(taken.join("keep.txt"), b"keep").unwrap();
        let err = write_atomically(&taken, b"new").unwrap_err();
        match &err {
            Error::Io { path, .. } => assert_eq!(path, &taken.display().to_string()),
            other => panic!("expected Error::Io, got {other}"),
        }
        assert_eq!(listing(dir.path()), ["taken"]);
        assert_eq!(fs::read(taken.join("keep.txt")).unwrap(), b"keep");
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_destination() {
        let dir = scratch();
        let path = dir.path().join("no_such_dir/m.bin");
        let err = write_atomically(&path, b"x").unwrap_err();
        assert!(
            matches!(&err, Error::Io { path: p, .. } if p == &path.display().to_string()),
            "{err}"
        );
        assert!(listing(dir.path()).is_empty());
    }
}
