//! The reference repo's JSON splits (path → label).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((items, names)) = roli_data::json_split::parse_json_split(text) {
            assert!(items.iter().all(|(_, id)| (0..names.len() as i64).contains(id)));
        }
    }
});
