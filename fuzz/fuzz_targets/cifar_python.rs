//! CIFAR-10/100 "python version" batches (pickled dicts holding a numpy array).
#![no_main]
use roli_data::cifar::{parse_python, CifarKind, PIXELS};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for kind in [CifarKind::Cifar10, CifarKind::Cifar100] {
        if let Ok((px, labels)) = parse_python(std::path::Path::new("fuzz_batch"), data, kind) {
            assert_eq!(px.len(), labels.len() * PIXELS);
        }
    }
});
