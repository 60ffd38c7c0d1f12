//! CIFAR-10/100 binary batches.
#![no_main]
use roli_data::cifar::{parse_binary, CifarKind, PIXELS};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for kind in [CifarKind::Cifar10, CifarKind::Cifar100] {
        if let Ok((px, labels)) = parse_binary(std::path::Path::new("fuzz.bin"), data, kind) {
            assert_eq!(px.len(), labels.len() * PIXELS);
        }
    }
});
