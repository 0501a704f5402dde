//! `cargo xtask libtorch`: LibTorch for the `tch` backend, from the PyTorch wheel on PyPI.
//!
//! burn-tch 0.22.1 builds against tch 0.22.0, which expects PyTorch 2.9.0. The wheel on PyPI
//! is a CUDA build, but its CPU part works on a machine without CUDA when only the CPU
//! libraries are linked. This module
//!
//! 1. installs `torch==2.9.0` without its dependencies (plus the two small CUDA runtime
//!    wheels its CPU libraries still load) into the git-ignored `.venv-libtorch`;
//! 2. makes `target/libtorch/`, a LIBTORCH folder for torch-sys: `include` links to the
//!    wheel's headers, `lib/` holds links to only the CPU libraries (leaving out
//!    `libtorch_cuda.so`, which would make torch-sys link CUDA libraries that are not
//!    installed);
//! 3. gives the environment a build and a run need: `LIBTORCH`,
//!    `LIBTORCH_BYPASS_VERSION_CHECK=1`, and `LD_LIBRARY_PATH` with the wheel's real `lib/`.
//!
//! Every step checks before it acts, so a second run only verifies (a few seconds).
//! `cargo xtask parity --backend tch` calls [`ensure`] and then reruns itself with
//! `--features tch` in that environment (see [`rerun_with_tch`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::python::{TORCH_VERSION, pip_install, run, workspace_root};

/// What is installed into `.venv-libtorch`, with `--no-deps` (about 1.9 GB).
const PACKAGES: &[&str] = &[
    "torch==2.9.0",
    "nvidia-cuda-runtime-cu12==12.8.90",
    "nvidia-cuda-cupti-cu12==12.8.90",
];

/// The libraries a CPU-only program needs; `lib/` of the LIBTORCH folder holds links to these.
pub const CPU_LIBRARIES: &[&str] = &[
    "libtorch.so",
    "libtorch_cpu.so",
    "libc10.so",
    "libgomp.so.1",
    "libshm.so",
];

/// Set in the environment of the rerun, so that it never reruns itself again.
const RERUN_GUARD: &str = "DL_XTASK_TCH_RERUN";

/// A LibTorch ready to build and run against.
pub struct Libtorch {
    /// The folder torch-sys reads as `LIBTORCH` (`include/`, `lib/`).
    pub dir: PathBuf,
    /// The wheel's own `torch/lib`, which must be on `LD_LIBRARY_PATH` at run time.
    pub runtime_lib: PathBuf,
}

impl Libtorch {
    /// The environment variables a build and a run with the `tch` feature need.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut ld = self.runtime_lib.display().to_string();
        if let Ok(old) = std::env::var("LD_LIBRARY_PATH")
            && !old.is_empty()
        {
            ld = format!("{ld}:{old}");
        }
        vec![
            ("LIBTORCH".into(), self.dir.display().to_string()),
            ("LIBTORCH_BYPASS_VERSION_CHECK".into(), "1".into()),
            ("LD_LIBRARY_PATH".into(), ld),
        ]
    }
}

/// Options of `cargo xtask libtorch`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Installs torch==2.9.0 (no dependencies) into .venv-libtorch and makes \
                  target/libtorch, then prints the environment for building with `--features \
                  tch`. Idempotent."
)]
pub struct LibtorchArgs {
    /// Print only `export NAME=value` lines, for `eval "$(cargo xtask libtorch --print-env)"`.
    #[arg(long)]
    print_env: bool,
}

pub fn run_command(args: &LibtorchArgs) -> Result<()> {
    let print_env = args.print_env;
    let libtorch = ensure(!print_env)?;
    if !print_env {
        println!("LibTorch {TORCH_VERSION} (CPU) is ready. Build and run with:");
    }
    for (name, value) in libtorch.env() {
        println!("export {name}={}", shell_quote(&value));
    }
    if !print_env {
        println!(
            "then for example: cargo run -p xtask --features tch -- parity --backend tch\n\
             (or just `cargo xtask parity --backend tch`, which does all of this itself)"
        );
    }
    Ok(())
}

/// Install the wheel and make the LIBTORCH folder where they are missing; `verbose` reports
/// each step on stderr.
pub fn ensure(verbose: bool) -> Result<Libtorch> {
    let root = workspace_root();
    if let Ok(dir) = std::env::var("LIBTORCH") {
        // A user's own LibTorch wins; they are responsible for LD_LIBRARY_PATH.
        return user_libtorch(PathBuf::from(dir));
    }
    let torch = install_wheel(&root.join(".venv-libtorch"), verbose)?;
    let dir = root.join("target/libtorch");
    make_folder(&torch, &dir)?;
    if verbose {
        eprintln!("LIBTORCH folder: {}", dir.display());
    }
    Ok(Libtorch {
        dir,
        runtime_lib: torch.join("lib"),
    })
}

/// A LibTorch the user named with `LIBTORCH`, which must have `include/` and `lib/`.
fn user_libtorch(dir: PathBuf) -> Result<Libtorch> {
    if !dir.join("include").is_dir() || !dir.join("lib").is_dir() {
        bail!(
            "LIBTORCH={} has no include/ and lib/ folders; unset it to let xtask install LibTorch",
            dir.display()
        );
    }
    Ok(Libtorch {
        runtime_lib: dir.join("lib"),
        dir,
    })
}

/// The installed `site-packages/torch` folder of `venv`, installing it when it is missing or
/// has another version.
fn install_wheel(venv: &Path, verbose: bool) -> Result<PathBuf> {
    let python = venv.join("bin/python");
    if !python.exists() {
        if verbose {
            eprintln!("creating {}", venv.display());
        }
        run(Command::new("python3").arg("-m").arg("venv").arg(venv))
            .context("creating .venv-libtorch (is python3 with venv installed?)")?;
    }
    if let Some(torch) = installed_torch(&python)? {
        return Ok(torch);
    }
    if verbose {
        eprintln!(
            "installing {} with --no-deps (about 1.9 GB, CPU use only)",
            PACKAGES.join(" ")
        );
    }
    pip_install(&python, &["--no-deps"], PACKAGES)
        .context("installing the PyTorch wheel into .venv-libtorch")?;
    installed_torch(&python)?.with_context(|| {
        format!(
            "torch=={TORCH_VERSION} is still not found in {} after installing it",
            venv.display()
        )
    })
}

/// `site-packages/torch` when torch `TORCH_VERSION` is installed for `python`. Reads the
/// version file instead of importing torch: the wheel's dependencies are not installed, so
/// `import torch` would fail.
fn installed_torch(python: &Path) -> Result<Option<PathBuf>> {
    let output = Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "{} could not name its site-packages: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let site = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let torch = site.join("torch");
    let Ok(version) = std::fs::read_to_string(torch.join("version.py")) else {
        return Ok(None);
    };
    let wanted = format!("__version__ = '{TORCH_VERSION}");
    let complete = CPU_LIBRARIES
        .iter()
        .all(|lib| torch.join("lib").join(lib).is_file())
        && torch.join("include/torch").is_dir();
    Ok((version.lines().any(|l| l.starts_with(&wanted)) && complete).then_some(torch))
}

/// Make (or repair) the LIBTORCH folder `dir` pointing into the installed wheel `torch`.
fn make_folder(torch: &Path, dir: &Path) -> Result<()> {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    link(&torch.join("include"), &dir.join("include"))?;
    for name in CPU_LIBRARIES {
        link(&torch.join("lib").join(name), &lib.join(name))?;
    }
    // Anything else in lib/ (a libtorch_cuda.so from an older layout) would change what
    // torch-sys links: remove it.
    for entry in std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if !CPU_LIBRARIES.iter().any(|l| name == *l) {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// A symbolic link `link` → `target`, replacing a link that points elsewhere.
fn link(target: &Path, link: &Path) -> Result<()> {
    if !target.exists() {
        bail!("{} is missing from the PyTorch wheel", target.display());
    }
    if let Ok(existing) = std::fs::read_link(link) {
        if existing == target {
            return Ok(());
        }
        std::fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

/// Rerun `cargo xtask <command> <args>` with `--features tch` in LibTorch's environment,
/// building into `target/tch` so that the default build's files are kept. Returns `None`
/// when this process already is such a rerun (the caller then reports tch as skipped).
pub fn rerun_with_tch(command: &str, args: &[OsString]) -> Result<Option<()>> {
    if std::env::var_os(RERUN_GUARD).is_some() {
        return Ok(None);
    }
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    configure_tch_build(&mut cargo)?;
    eprintln!("building xtask with --features tch (first build: several minutes)");
    cargo
        .current_dir(workspace_root())
        .args(["run", "--quiet", "-p", "xtask", "--features", "tch", "--"])
        .arg(command)
        .args(args)
        .env(RERUN_GUARD, "1");
    run(&mut cargo).context("the parity run with LibTorch failed")?;
    Ok(Some(()))
}

/// Prepare a cargo command that builds with the `tch` feature: LibTorch's environment
/// (installed on first use) and `target/tch`, the one build folder of every tch build, so that
/// the default build's files are kept.
pub fn configure_tch_build(cargo: &mut Command) -> Result<()> {
    let libtorch = ensure(true)?;
    cargo
        .envs(libtorch.env())
        .env("CARGO_TARGET_DIR", workspace_root().join("target/tch"));
    Ok(())
}

/// Quote `value` for a POSIX shell.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_env_is_the_only_option() {
        assert!(!crate::parse_args::<LibtorchArgs>(&[]).unwrap().print_env);
        assert!(
            crate::parse_args::<LibtorchArgs>(&["--print-env"])
                .unwrap()
                .print_env
        );
        let err = crate::parse_args::<LibtorchArgs>(&["--print-env", "x"]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
    }

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_folder_links_only_cpu_libraries() {
        let tmp = std::env::temp_dir().join(format!("xtask-libtorch-{}", std::process::id()));
        let torch = tmp.join("torch");
        std::fs::create_dir_all(torch.join("lib")).unwrap();
        std::fs::create_dir_all(torch.join("include/torch")).unwrap();
        for name in CPU_LIBRARIES.iter().chain(&["libtorch_cuda.so"]) {
            std::fs::write(torch.join("lib").join(name), b"").unwrap();
        }
        let dir = tmp.join("libtorch");
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::os::unix::fs::symlink(
            torch.join("lib/libtorch_cuda.so"),
            dir.join("lib/libtorch_cuda.so"),
        )
        .unwrap();
        make_folder(&torch, &dir).unwrap();
        // Twice: the second run finds everything in place.
        make_folder(&torch, &dir).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.join("lib"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut expected: Vec<String> = CPU_LIBRARIES.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(
            std::fs::read_link(dir.join("include")).unwrap(),
            torch.join("include")
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_user_libtorch_needs_include_and_lib() {
        let tmp = std::env::temp_dir().join(format!("xtask-libtorch-user-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("include")).unwrap();
        let err = user_libtorch(tmp.clone()).err().unwrap();
        assert!(
            err.to_string().contains("has no include/ and lib/"),
            "{err:#}"
        );
        std::fs::create_dir_all(tmp.join("lib")).unwrap();
        let libtorch = user_libtorch(tmp.clone()).unwrap();
        assert_eq!(libtorch.runtime_lib, tmp.join("lib"));
        let env = libtorch.env();
        assert_eq!(env[0], ("LIBTORCH".into(), tmp.display().to_string()));
        assert!(env[2].1.starts_with(&tmp.join("lib").display().to_string()));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_missing_library_is_named() {
        let tmp = std::env::temp_dir().join(format!("xtask-libtorch-miss-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("torch/include")).unwrap();
        let err = make_folder(&tmp.join("torch"), &tmp.join("libtorch")).unwrap_err();
        assert!(
            err.to_string().contains("libtorch.so is missing"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
