//! A stage's `state.json` (the serde call `roli::artifacts::read_state` makes).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<roli::train::plan::StageState>(data);
});
