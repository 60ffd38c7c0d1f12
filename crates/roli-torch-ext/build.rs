//! Compiles `cpp/ext.cpp` (one translation unit) against the headers of the libtorch that torch-sys
//! found. torch-sys (`links = "tch"`) exports its library directory as `DEP_TCH_LIBTORCH_LIB` to
//! crates that depend on it directly; the headers sit in the sibling `include/`.
//! Only CPU-side headers are used (the PyPI wheel lacks some CUDA ones); linking `torch_cuda` is the
//! application's business, not this crate's.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=cpp/ext.cpp");
    println!("cargo:rerun-if-changed=cpp/dist.cpp");
    println!("cargo:rerun-if-changed=cpp/guard.h");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("DEP_TCH_LIBTORCH_LIB is unset: torch-sys must be a direct dependency"),
    );
    let include = lib.parent().expect("libtorch's lib directory has a parent").join("include");
    cc::Build::new()
        .cpp(true)
        .file("cpp/ext.cpp")
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        // libtorch's own headers are not warning-clean; -isystem silences them, -w the rest.
        .flag(format!("-isystem{}", include.display()))
        .flag(format!("-isystem{}", include.join("torch/csrc/api/include").display()))
        .flag("-w")
        .compile("roli_torch_ext");
    // The process group (c10d over Gloo): gloo's headers come from Debian's libgloo-dev, unpacked
    // by the set-up into .venv/gloo (the wheel ships c10d's headers but not gloo's).
    let gloo = gloo_include();
    cc::Build::new()
        .cpp(true)
        .file("cpp/dist.cpp")
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("USE_C10D_GLOO", None)
        .flag(format!("-isystem{}", include.display()))
        .flag(format!("-isystem{}", include.join("torch/csrc/api/include").display()))
        .flag(format!("-isystem{}", gloo.display()))
        .flag("-w")
        .compile("roli_torch_ext_dist");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    // This crate's own test harness finds libtorch without LD_LIBRARY_PATH (as build/rpath.rs does
    // for the app); link args of a library's build script reach only its own tests/examples.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}

/// Gloo's headers: `$ROLI_GLOO_INCLUDE`, else the set-up's `.venv/gloo/usr/include`.
fn gloo_include() -> PathBuf {
    println!("cargo:rerun-if-env-changed=ROLI_GLOO_INCLUDE");
    let dir = std::env::var_os("ROLI_GLOO_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/gloo/usr/include"));
    if !dir.join("gloo/context.h").is_file() {
        panic!(
            "gloo headers not found in {}: run `make setup` (scripts/setup.sh unpacks Debian's libgloo-dev \
             there) or set ROLI_GLOO_INCLUDE",
            dir.display()
        );
    }
    println!("cargo:rerun-if-changed={}", dir.join("gloo/context.h").display());
    dir
}
