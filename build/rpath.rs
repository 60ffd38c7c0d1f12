//! Shared build script: bakes libtorch's directory into the RUNPATH of every binary and test
//! harness of the crate that uses it, so `roli` and `cargo test` run without LD_LIBRARY_PATH.
//! `DEP_TCH_LIBTORCH_LIB` is exported by torch-sys (`links = "tch"`) to its direct dependents.
//!
//! The `roli` crate also links `libtorch_cuda` unconditionally: rustc links with `--as-needed`,
//! and a binary that calls no CUDA symbol itself would drop it, leaving `Cuda::is_available()`
//! false on a GPU machine. The PyPI wheel ships the CUDA libraries, so this links and runs on a
//! machine without a GPU too (CUDA is then simply not available).
//!
//! For the `roli` crate only, it records what a run manifest needs from build time
//! (`crate::manifest`): `ROLI_GIT_COMMIT`, `ROLI_GIT_DIRTY` (`true`/`false`, `unknown` without git)
//! and `ROLI_LIBTORCH_VERSION` (from libtorch's `torch/headeronly/version.h`).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let is_roli = std::env::var("CARGO_PKG_NAME").as_deref() == Ok("roli");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        let cuda = std::path::Path::new(&dir).join("libtorch_cuda.so");
        if is_roli && cuda.exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
        if is_roli {
            let v = libtorch_version(std::path::Path::new(&dir)).unwrap_or_else(|| "unknown".into());
            println!("cargo:rustc-env=ROLI_LIBTORCH_VERSION={v}");
        }
    }
    if is_roli {
        git_info();
    }
}

/// `2.11.0` from `include/torch/headeronly/version.h` next to libtorch's `lib/`.
fn libtorch_version(lib: &std::path::Path) -> Option<String> {
    let include = lib.parent()?.join("include").join("torch");
    let text = ["headeronly/version.h", "csrc/api/include/torch/version.h"]
        .iter()
        .find_map(|p| std::fs::read_to_string(include.join(p)).ok())?;
    let num = |key: &str| {
        text.lines().find_map(|l| {
            let rest = l.trim().strip_prefix("#define ")?.strip_prefix(key)?;
            rest.trim().parse::<u32>().ok()
        })
    };
    Some(format!("{}.{}.{}", num("TORCH_VERSION_MAJOR ")?, num("TORCH_VERSION_MINOR ")?, num("TORCH_VERSION_PATCH ")?))
}

/// The commit and dirty flag of the source tree, re-read when HEAD, the index or the crate's
/// sources change; "unknown" without git.
fn git_info() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").arg("-C").arg(&manifest_dir).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty());
    let dirty = match &commit {
        Some(_) => git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| (!s.is_empty()).to_string()),
        None => None,
    };
    println!("cargo:rustc-env=ROLI_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
    println!("cargo:rustc-env=ROLI_GIT_DIRTY={}", dirty.as_deref().unwrap_or("unknown"));
    println!("cargo:rerun-if-changed={manifest_dir}/src");
    let watch = |p: Option<String>| {
        if let Some(p) = p.filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={p}");
        }
    };
    watch(git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]));
    watch(git(&["rev-parse", "--path-format=absolute", "--git-path", "index"]));
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--path-format=absolute", "--git-path", &r]));
    }
}
