//! IDX files, raw or gzip (the path version is `roli_data::idx::read_idx`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(a) = roli_data::idx::decode_idx(data.to_vec()) {
        assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
    }
});
