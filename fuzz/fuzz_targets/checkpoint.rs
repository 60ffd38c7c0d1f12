//! Checkpoints by content: the torch.save zip and its pickle, the legacy-format check,
//! safetensors headers.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(sd) = roli_models::checkpoint::parse_state_dict(std::path::Path::new("fuzz.pt"), data) {
        for (name, t) in &sd.tensors {
            assert!(t.numel() <= data.len() + (1 << 24), "{name}: {} elements", t.numel());
        }
    }
});
