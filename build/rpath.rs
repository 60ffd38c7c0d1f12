//! Shared build script: bakes libtorch's directory into the RUNPATH of every binary and test
//! harness of the crate that uses it, so `roli` and `cargo test` run without LD_LIBRARY_PATH.
//! `DEP_TCH_LIBTORCH_LIB` is exported by torch-sys (`links = "tch"`) to its direct dependents.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
