//! `head.json`, the stage-1 → stage-2 hand-off.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = roli::head::parse_meta(std::path::Path::new("head.json"), text);
    }
});
