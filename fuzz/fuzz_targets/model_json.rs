//! `model.json`, the sidecar of a roli checkpoint, and its backbone descriptor's validation.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(s) = roli_models::own::parse_sidecar("model.json".into(), text) {
            let _ = s.descriptor.validate();
        }
    }
});
