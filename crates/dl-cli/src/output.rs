//! The run folder and how files get into it: whole or not at all (temporary file + rename).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The files of one training run.
#[derive(Debug, Clone)]
pub struct RunFolder {
    /// The folder.
    pub dir: PathBuf,
}

/// How an existing run folder may be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse it.
    Refuse,
    /// Continue it.
    Resume,
    /// Replace its run files.
    Overwrite,
}

impl RunFolder {
    /// Names of the files a run writes; `--overwrite` removes exactly these.
    pub const FILES: [&'static str; 10] = [
        "config.toml",
        "metrics.csv",
        "metrics.json",
        "loss.png",
        "accuracy.png",
        "last.safetensors",
        "best.safetensors",
        "attention.png",
        "mae.png",
        "forecast.png",
    ];

    /// Prepare `dir` for a run: create it, or check what it holds against `existing`.
    pub fn prepare(dir: &Path, existing: Existing) -> Result<Self> {
        let folder = Self {
            dir: dir.to_path_buf(),
        };
        let occupied = dir.exists()
            && std::fs::read_dir(dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .next()
                .is_some();
        match existing {
            Existing::Resume if !folder.last().exists() => bail!(
                "--resume: {} holds no checkpoint to resume from (expected {})",
                dir.display(),
                folder.last().display()
            ),
            Existing::Refuse if occupied => bail!(
                "output folder {} already exists and is not empty: pass --resume to continue its run, --overwrite to replace it, or another --out",
                dir.display()
            ),
            Existing::Overwrite if occupied => {
                for name in Self::FILES {
                    let path = dir.join(name);
                    if path.exists() {
                        std::fs::remove_file(&path)
                            .with_context(|| format!("removing {}", path.display()))?;
                    }
                }
            }
            _ => {}
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(folder)
    }

    /// The checkpoint after the latest epoch (or the interrupted step).
    pub fn last(&self) -> PathBuf {
        self.dir.join("last.safetensors")
    }

    /// The checkpoint of the best test accuracy.
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }

    /// A file of the run.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}
