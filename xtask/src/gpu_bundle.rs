//! `cargo xtask gpu-bundle`: a parity binary for a GPU machine that has PyTorch but no network.
//!
//! The use case (docs/backends.md): a GPU machine with an NVIDIA driver and a PyTorch install
//! (by default 2.11 with CUDA 13) but no Rust toolchain and no network, reached only by copying
//! files to it. This command builds, on a machine with the toolchain, one xtask binary that runs
//! `parity` there once copied:
//!
//! 1. downloads that PyTorch version's wheel with `pip download --no-deps` into the
//!    git-ignored `.whl/` (about 530 MB for 2.11.0);
//! 2. unpacks its headers and the libraries to link against (CPU and CUDA) into
//!    `target/libtorch-<version>-cuda/`, a LIBTORCH folder. torch-sys links `torch_cuda`
//!    because `libtorch_cuda.so` is in its `lib/`;
//! 3. builds xtask in release with `--features tch,wgpu` into `target/gpu/`, passing the
//!    linker `--no-as-needed -ltorch_cuda -lc10_cuda` (no Rust code calls into them, so
//!    `--as-needed` would drop them and LibTorch would see no CUDA) and
//!    `--allow-shlib-undefined` (their CUDA dependencies are not installed here);
//! 4. checks with `readelf` that the binary needs `libtorch_cuda.so`, and writes it gzipped
//!    (78 MB → 19 MB, one small file to copy) as `xtask.gz` with a `BUNDLE`
//!    file (PyTorch version, commit, features) into `target/gpu-bundle/`.
//!
//! No rpath is embedded: `scripts/gpu-parity.sh` sets `LD_LIBRARY_PATH` to the `torch/lib`
//! of the machine it runs on, after checking that its PyTorch version is the bundle's (a
//! binary built for 2.9 crashes on 2.11). Each step is skipped when its result is there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::libtorch::CPU_LIBRARIES;
use crate::python::{pip, run, workspace_root};

/// The PyTorch version a bundle targets unless `--torch` says otherwise.
const DEFAULT_TORCH: &str = "2.11.0";

/// The CUDA libraries the binary must name as NEEDED, so that LibTorch registers CUDA.
const CUDA_LIBRARIES: &[&str] = &["libtorch_cuda.so", "libc10_cuda.so"];

/// The libraries the binary is linked against: the CPU ones every tch build links
/// ([`CPU_LIBRARIES`]) and the two CUDA ones it must keep.
fn libraries() -> impl Iterator<Item = &'static str> {
    CPU_LIBRARIES.iter().chain(CUDA_LIBRARIES).copied()
}

/// Unpacks the headers and [`libraries`] of a wheel: argv = wheel, destination, library names.
const UNPACK_PY: &str = r#"
import os, shutil, sys, zipfile
wheel, dest, libs = sys.argv[1], sys.argv[2], set(sys.argv[3:])
found = set()
try:
    z = zipfile.ZipFile(wheel)
except (OSError, zipfile.BadZipFile) as e:
    sys.exit(f"{wheel} is not a readable wheel (zip file): {e}; delete it to download it again")
with z:
    for info in z.infolist():
        name = info.filename
        if name.endswith("/"):
            continue
        if name.startswith("torch/include/"):
            target = os.path.join(dest, "include", name[len("torch/include/"):])
        elif name.startswith("torch/lib/") and name[len("torch/lib/"):] in libs:
            found.add(name[len("torch/lib/"):])
            target = os.path.join(dest, "lib", name[len("torch/lib/"):])
        else:
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
missing = sorted(libs - found)
if missing:
    sys.exit(f"{wheel} has no torch/lib/{', torch/lib/'.join(missing)}")
"#;

/// Options of `cargo xtask gpu-bundle`.
#[derive(Debug, PartialEq, clap::Args)]
#[command(
    after_help = "Builds xtask (release) against the CUDA libraries of the torch==VERSION wheel \
                  and puts it with a BUNDLE file into DIR. Run it on the GPU machine with \
                  scripts/gpu-parity.sh."
)]
pub struct GpuBundleArgs {
    /// The PyTorch version of the GPU machine, plain (e.g. 2.11.0, the default).
    #[arg(long, value_name = "VERSION", default_value = DEFAULT_TORCH, value_parser = plain_version)]
    torch: String,
    /// Cargo features of the bundled xtask, comma-separated; must include tch.
    #[arg(long, value_name = "LIST", default_value = "tch,wgpu", value_parser = features_with_tch)]
    features: String,
    /// Where xtask.gz and BUNDLE go (default: target/gpu-bundle).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// A plain PyTorch version (`2.11.0`, not `2.11.0+cu130`): the bundle's wheel and the
/// script's check both use it.
fn plain_version(v: &str) -> Result<String, String> {
    let plain = !v.is_empty()
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !plain {
        return Err(format!(
            "expected a plain PyTorch version such as {DEFAULT_TORCH}"
        ));
    }
    Ok(v.to_string())
}

fn features_with_tch(list: &str) -> Result<String, String> {
    if !list.split(',').any(|f| f.trim() == "tch") {
        return Err("the bundle is for LibTorch with CUDA, so it needs `tch`".into());
    }
    Ok(list.to_string())
}

impl GpuBundleArgs {
    fn out(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| workspace_root().join("target/gpu-bundle"))
    }
}

pub fn run_command(options: &GpuBundleArgs) -> Result<()> {
    let out = options.out();
    let root = workspace_root();
    let wheel = download_wheel(&root.join(".whl"), &options.torch)?;
    let libtorch = root.join(format!("target/libtorch-{}-cuda", options.torch));
    unpack(&wheel, &libtorch)?;

    let target_dir = root.join("target/gpu");
    eprintln!(
        "building xtask (release, --features {}) against {} (first build: 15-25 minutes on 2 cores)",
        options.features,
        libtorch.display()
    );
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&root)
        .env("LIBTORCH", &libtorch)
        .env("LIBTORCH_BYPASS_VERSION_CHECK", "1")
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["rustc", "--release", "-p", "xtask", "--bin", "xtask"])
        .args(["--features", &options.features, "--"])
        .args(rustc_link_args());
    run(&mut cargo).context("building the GPU bundle")?;

    let binary = target_dir.join("release/xtask");
    let needed = needed_libraries(&binary)?;
    check_links_cuda(&binary, &needed)?;

    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let glibc = max_glibc(&readelf(&["-V"], &binary)?)
        .context("readelf -V names no GLIBC_ version the binary needs")?;
    let bundled = out.join("xtask.gz");
    let bytes = std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    let compressed = gzip(&bytes)?;
    dl_io::write_atomically(&bundled, &compressed)?;
    let manifest = bundle_manifest(options, &crate::git::commit(&root), &glibc);
    dl_io::write_atomically(&out.join("BUNDLE"), manifest.as_bytes())?;
    println!(
        "{} ({:.1} MB, {:.1} MB unpacked) needs {}\n{}\
         run it on the GPU machine with: bash scripts/gpu-parity.sh {}",
        bundled.display(),
        compressed.len() as f64 / 1e6,
        bytes.len() as f64 / 1e6,
        needed.join(", "),
        manifest,
        out.strip_prefix(&root).unwrap_or(&out).display(),
    );
    Ok(())
}

/// The arguments for the final link only (`cargo rustc -- ...`): keep the CUDA libraries that
/// no Rust code calls, and let their own CUDA dependencies stay unresolved at link time.
fn rustc_link_args() -> Vec<String> {
    let mut args = Vec::new();
    let mut link_arg = |a: &str| {
        args.push("-C".to_string());
        args.push(format!("link-arg={a}"));
    };
    link_arg("-Wl,--no-as-needed");
    for lib in CUDA_LIBRARIES {
        let name = lib.trim_start_matches("lib").trim_end_matches(".so");
        link_arg(&format!("-l{name}"));
    }
    link_arg("-Wl,--as-needed");
    link_arg("-Wl,--allow-shlib-undefined");
    args.push("-C".into());
    args.push("strip=symbols".into());
    args
}

/// `torch-<version>-*.whl` in `dir`, downloaded with pip when it is not there.
fn download_wheel(dir: &Path, version: &str) -> Result<PathBuf> {
    if let Some(wheel) = find_wheel(dir, version)? {
        return Ok(wheel);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "downloading torch=={version} (no dependencies) into {}",
        dir.display()
    );
    let dir_arg = dir.display().to_string();
    pip(
        Path::new("python3"),
        "download",
        &["--no-deps", "--only-binary=:all:", "-d", &dir_arg],
        &[&format!("torch=={version}")],
    )
    .context("downloading the PyTorch wheel (python3 -m pip download)")?;
    find_wheel(dir, version)?.with_context(|| {
        format!(
            "pip reported success but no torch-{version}-*.whl is in {}",
            dir.display()
        )
    })
}

fn find_wheel(dir: &Path, version: &str) -> Result<Option<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let prefix = format!("torch-{version}-");
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Unpack the wheel's headers and [`libraries`] into `dest` (via a temporary folder renamed
/// at the end, so an interrupted unpack is never taken for a finished one).
fn unpack(wheel: &Path, dest: &Path) -> Result<()> {
    if dest.join("include/torch").is_dir()
        && libraries().all(|l| dest.join("lib").join(l).is_file())
    {
        return Ok(());
    }
    let partial = dest.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    eprintln!(
        "unpacking headers and {} libraries of {}",
        libraries().count(),
        wheel.display()
    );
    run(Command::new("python3")
        .arg("-c")
        .arg(UNPACK_PY)
        .arg(wheel)
        .arg(&partial)
        .args(libraries()))
    .with_context(|| format!("unpacking {}", wheel.display()))?;
    if dest.exists() {
        std::fs::remove_dir_all(dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    std::fs::rename(&partial, dest)
        .with_context(|| format!("renaming {} to {}", partial.display(), dest.display()))
}

/// The NEEDED entries of an ELF binary, read with `readelf -d`.
fn needed_libraries(binary: &Path) -> Result<Vec<String>> {
    Ok(parse_needed(&readelf(&["-d"], binary)?))
}

/// Fails unless `needed` (the binary's NEEDED entries) names every [`CUDA_LIBRARIES`] entry:
/// without them LibTorch never registers CUDA and `tch-cuda` could not start.
fn check_links_cuda(binary: &Path, needed: &[String]) -> Result<()> {
    let missing: Vec<_> = CUDA_LIBRARIES
        .iter()
        .filter(|lib| !needed.iter().any(|n| n == *lib))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} does not need {missing:?} (NEEDED: {needed:?}); LibTorch would not see CUDA",
            binary.display()
        );
    }
    Ok(())
}

/// `readelf <flags> <binary>`'s output.
fn readelf(flags: &[&str], binary: &Path) -> Result<String> {
    let output = Command::new("readelf")
        .args(flags)
        .arg(binary)
        .output()
        .context("running readelf (from binutils) to check what the bundle links")?;
    if !output.status.success() {
        bail!(
            "readelf {} {} failed: {}",
            flags.join(" "),
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The newest `GLIBC_x.y` symbol version in `readelf -V` output: the oldest glibc the binary
/// runs with.
fn max_glibc(readelf_v: &str) -> Option<String> {
    readelf_v
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let parts: Option<Vec<u32>> = version.split('.').map(|p| p.parse().ok()).collect();
            Some((parts?, version))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, version)| version)
}

/// The names in `(NEEDED) Shared library: [name]` lines of `readelf -d` output.
fn parse_needed(readelf: &str) -> Vec<String> {
    readelf
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            let start = l.find('[')? + 1;
            let end = l[start..].find(']')? + start;
            Some(l[start..end].to_string())
        })
        .collect()
}

/// The `BUNDLE` file: `key=value` lines that scripts/gpu-parity.sh reads.
fn bundle_manifest(options: &GpuBundleArgs, commit: &str, glibc: &str) -> String {
    format!(
        "torch={}\nglibc={glibc}\nfeatures={}\ncommit={commit}\n",
        options.torch, options.features
    )
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<GpuBundleArgs, clap::Error> {
        crate::parse_args(args)
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_target_pytorch_2_11() {
        let options = parse(&[]).unwrap();
        assert_eq!(options.torch, "2.11.0");
        assert_eq!(options.features, "tch,wgpu");
        assert!(options.out().ends_with("target/gpu-bundle"));
    }

    #[test]
    fn bad_options_are_named() {
        let err = parse(&["--torch", "2.11.0+cu130"]).unwrap_err();
        assert!(err.to_string().contains("plain PyTorch version"), "{err}");
        let err = parse(&["--features", "wgpu"]).unwrap_err();
        assert!(err.to_string().contains("needs `tch`"), "{err}");
        let err = parse(&["--torch"]).unwrap_err();
        assert!(err.to_string().contains("--torch <VERSION>"), "{err}");
        for err in [
            parse(&["--torch", ""]).unwrap_err(),
            parse(&["--torch", "2..0"]).unwrap_err(),
            parse(&["--torch"]).unwrap_err(),
        ] {
            assert_eq!(err.exit_code(), 2, "{err}");
        }
        let options = parse(&["--torch", "2.9.0", "--features", "tch", "--out", "/b"]);
        assert_eq!(
            options.unwrap(),
            GpuBundleArgs {
                torch: "2.9.0".into(),
                features: "tch".into(),
                out: Some("/b".into())
            }
        );
    }

    #[test]
    fn the_cuda_libraries_are_linked_even_though_nothing_calls_them() {
        let args = rustc_link_args().join(" ");
        assert_eq!(
            args,
            "-C link-arg=-Wl,--no-as-needed -C link-arg=-ltorch_cuda -C link-arg=-lc10_cuda \
             -C link-arg=-Wl,--as-needed -C link-arg=-Wl,--allow-shlib-undefined -C strip=symbols"
        );
    }

    #[test]
    fn needed_entries_are_read_from_readelf() {
        let readelf = "\nDynamic section at offset 0x1 contains 3 entries:\n  Tag        Type                         Name/Value\n 0x0000000000000001 (NEEDED)             Shared library: [libtorch_cuda.so]\n 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n 0x000000000000001d (RUNPATH)            Library runpath: [/x]\n";
        assert_eq!(parse_needed(readelf), vec!["libtorch_cuda.so", "libc.so.6"]);
    }

    #[test]
    fn the_bundle_is_plain_gzip() {
        use std::io::Read;
        let binary: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
        let packed = gzip(&binary).unwrap();
        assert!(packed.len() < binary.len() / 10);
        assert_eq!(
            &packed[..2],
            &[0x1f, 0x8b],
            "gzip magic, for `gzip -dc` on the GPU machine"
        );
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, binary);
    }

    #[test]
    fn the_manifest_is_what_the_script_reads() {
        let options = parse(&[]).unwrap();
        assert_eq!(
            bundle_manifest(&options, "abc123", "2.35"),
            "torch=2.11.0\nglibc=2.35\nfeatures=tch,wgpu\ncommit=abc123\n"
        );
    }

    #[test]
    fn a_binary_without_the_cuda_libraries_is_refused() {
        let needed = strings(&["libtorch_cpu.so", "libtorch_cuda.so", "libc.so.6"]);
        let err = check_links_cuda(Path::new("xtask"), &needed).unwrap_err();
        assert!(
            err.to_string()
                .contains("xtask does not need [\"libc10_cuda.so\"]"),
            "{err}"
        );
        let needed = strings(&["libc10_cuda.so", "libtorch_cuda.so"]);
        assert!(check_links_cuda(Path::new("xtask"), &needed).is_ok());
    }

    /// scripts/gpu-parity.sh with `bundle`, its results in `out`.
    fn gpu_parity_script(bundle: &Path, out: &Path) -> std::process::Output {
        Command::new("bash")
            .arg(workspace_root().join("scripts/gpu-parity.sh"))
            .arg(bundle)
            .env("OUT", out)
            .output()
            .expect("bash runs")
    }

    #[test]
    fn the_script_stops_with_status_2_on_a_missing_bundle_or_too_old_a_glibc() {
        let tmp = std::env::temp_dir().join(format!("xtask-gpu-script-{}", std::process::id()));
        let bundle = tmp.join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();

        let output = gpu_parity_script(&tmp.join("missing"), &tmp.join("out"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("missing/xtask.gz and"), "{stderr}");

        // A bundle that needs a glibc no machine has: refused before anything runs.
        std::fs::write(
            bundle.join("xtask.gz"),
            gzip(b"#!/bin/sh\nexit 0\n").unwrap(),
        )
        .unwrap();
        let options = parse(&[]).unwrap();
        let manifest = bundle_manifest(&options, "abc123", "999.0");
        std::fs::write(bundle.join("BUNDLE"), manifest).unwrap();
        let output = gpu_parity_script(&bundle, &tmp.join("out"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("the bundle needs 999.0 or newer"),
            "{stderr}"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn the_oldest_glibc_is_the_newest_symbol_version() {
        let readelf = "  0x0010:   Name: GLIBC_2.2.5  Flags: none  Version: 8\n\
                       0f8:  13 (GLIBC_2.35)    8 (GLIBC_2.2.5)  12 (GLIBC_2.3.4)\n\
                       0x0120:   Name: GLIBC_2.9  Flags: none  Version: 19\n\
                       0x0130:   Name: GLIBCXX_3.4.26  Flags: none\n";
        assert_eq!(max_glibc(readelf).as_deref(), Some("2.35"));
        assert_eq!(max_glibc("no versions"), None);
    }

    #[test]
    fn an_interrupted_unpack_is_redone_and_a_wheel_is_found_by_version() {
        let tmp = std::env::temp_dir().join(format!("xtask-gpu-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(
            tmp.join("torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
            b"",
        )
        .unwrap();
        std::fs::write(
            tmp.join("torch-2.1.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
            b"",
        )
        .unwrap();
        let found = find_wheel(&tmp, "2.11.0").unwrap().unwrap();
        assert!(found.ends_with("torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl"));
        assert!(find_wheel(&tmp, "2.9.0").unwrap().is_none());
        // The empty "wheel" is not a zip file: python's error is reported, with the wheel named,
        // and nothing is left that looks finished.
        let dest = tmp.join("libtorch");
        let err = unpack(&found, &dest).unwrap_err();
        assert!(format!("{err:#}").contains("unpacking"), "{err:#}");
        assert!(!dest.exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
