//! The CIFAR pickle machine on its own.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = roli_data::pickle::parse(data);
});
