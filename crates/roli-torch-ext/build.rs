//! Compiles `cpp/ext.cpp` (one translation unit) against the headers of the libtorch that torch-sys
//! found. torch-sys (`links = "tch"`) exports its library directory as `DEP_TCH_LIBTORCH_LIB` to
//! crates that depend on it directly; the headers sit in the sibling `include/`.
//! Only CPU-side headers are used (the PyPI wheel lacks some CUDA ones); linking `torch_cuda` is the
//! application's business, not this crate's.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=cpp/ext.cpp");
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
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    // This crate's own test harness finds libtorch without LD_LIBRARY_PATH (as build/rpath.rs does
    // for the app); link args of a library's build script reach only its own tests/examples.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
