//! The TOML run config: parse, defaults, validation.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = roli::config::RunConfig::from_toml_str(text, &[], "fuzz.toml");
    }
});
