//! Shared build script: bakes libtorch's directory into the RUNPATH of every binary and test
//! harness of the crate that uses it, so `roli` and `cargo test` run without LD_LIBRARY_PATH.
//! `DEP_TCH_LIBTORCH_LIB` is exported by torch-sys (`links = "tch"`) to its direct dependents.
//!
//! The `roli` crate also links `libtorch_cuda` unconditionally: rustc links with `--as-needed`,
//! and a binary that calls no CUDA symbol itself would drop it, leaving `Cuda::is_available()`
//! false on a GPU machine. The PyPI wheel ships the CUDA libraries, so this links and runs on a
//! machine without a GPU too (CUDA is then simply not available).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        let cuda = std::path::Path::new(&dir).join("libtorch_cuda.so");
        if std::env::var("CARGO_PKG_NAME").as_deref() == Ok("roli") && cuda.exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
