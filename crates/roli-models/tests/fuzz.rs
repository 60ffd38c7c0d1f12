//! Fuzzing roli-models' parsers on stable Rust (issue 14): checkpoints by content (the
//! `torch.save` zip reader and its pickle machine, the legacy-format check, safetensors headers)
//! and the `model.json` sidecar. 10,000 mutated cases per parser (`ROLI_FUZZ_CASES` changes
//! that); no panic, no hang, no Rust allocation above 64 MiB (the capped allocator aborts
//! naming the case). libtorch allocates outside Rust's allocator, so every accepted tensor is
//! also checked to be no larger than the input could hold.
//! `cargo test --release -p roli-models --test fuzz -- --nocapture` prints cases and wall time.
use roli_fuzz::{Campaign, Mutator};
use roli_models::checkpoint::parse_state_dict;
use roli_models::own::parse_sidecar;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

#[global_allocator]
static ALLOC: roli_fuzz::CapAlloc = roli_fuzz::CapAlloc;

fn seed_file(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_seeds").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Parses a checkpoint and checks what it accepted: no tensor bigger than the input could hold
/// (beyond the small expanded views the torch reader allows).
fn check_checkpoint(b: &[u8]) -> Result<(), String> {
    let sd = parse_state_dict(Path::new("fuzz.pt"), b).map_err(|e| e.to_string())?;
    for (name, t) in &sd.tensors {
        let n = t.numel();
        assert!(n <= b.len() + (1 << 24), "{name}: {n} elements from a {}-byte input", b.len());
    }
    Ok(())
}

const PICKLE_TOKENS: [&[u8]; 18] = [
    b"(",
    b")",
    b"]",
    b"}",
    b"t",
    b"R",
    b"b",
    b"Q",
    b"0",
    b"2",
    b"h\x00",
    b"\x85",
    b"\x86",
    b"\x87",
    b"ctorch._utils\n_rebuild_tensor_v2\n",
    b"ccollections\nOrderedDict\n",
    b"X\x07\x00\x00\x00storage",
    b"J\xff\xff\xff\xff",
];

#[test]
fn checkpoint_bytes() {
    // Whole files: zip container, pickle, storages and safetensors headers, by content sniffing.
    let seeds = vec![seed_file("flat.pt"), seed_file("wrapped.pt"), seed_file("flat.safetensors")];
    let mut dict: Vec<&[u8]> = vec![
        b"PK\x03\x04",
        b"PK\x01\x02",
        b"PK\x05\x06",
        b"PK\x06\x06",
        b"PK\x06\x07",
        b"\x01\x00\x18\x00",
        b"\x80\x02",
        br#"{"a":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4]}}"#,
        br#""shape":[18446744073709551615]"#,
        br#""data_offsets":[0,18446744073709551615]"#,
        br#""dtype":"F64""#,
        br#""dtype":"F8_E4M3""#,
        br#""__metadata__":{"k":"v"}"#,
    ];
    dict.extend(PICKLE_TOKENS);
    let m = Mutator::new(seeds, &dict);
    Campaign::new("checkpoint").run(&m, check_checkpoint).assert_clean();
}

/// A torch.save archive's entries, to rebuild it around a mutated `data.pkl`.
fn entries(zip_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(Cursor::new(zip_bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().to_string(), b)
        })
        .collect()
}

fn write_zip(entries: &[(String, Vec<u8>)], pkl: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(if name.ends_with("/data.pkl") { pkl } else { data }).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn torch_pickle_in_a_valid_zip() {
    // The pickle machine behind a well-formed container (mutating the whole file mostly breaks
    // the zip's offsets first): only `data.pkl` is mutated, the storages stay.
    let archives: Vec<Vec<(String, Vec<u8>)>> =
        ["flat.pt", "wrapped.pt"].iter().map(|f| entries(&seed_file(f))).collect();
    let pickles: Vec<Vec<u8>> =
        archives.iter().map(|a| a.iter().find(|(n, _)| n.ends_with("/data.pkl")).unwrap().1.clone()).collect();
    let m = Mutator::new(pickles, &PICKLE_TOKENS);
    let out = Campaign::new("torch-pickle").run(&m, |pkl| {
        // Both archives have storages 0 and 1; the larger file list is the richer target.
        let zip = write_zip(&archives[0], pkl);
        check_checkpoint(&zip)
    });
    out.assert_clean();
}

#[test]
fn model_json_sidecar() {
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../zoo");
    let seeds: Vec<Vec<u8>> = ["lenet5-mnist-at", "vit-nano-mnist-at", "swin-nano-mnist-std"]
        .iter()
        .map(|m| std::fs::read(zoo.join(m).join("model.json")).unwrap())
        .collect();
    let dict: [&[u8]; 10] = [b"{", b"}", b"[", b"]", b"\"", b",", b"1e999", b"-1", b"18446744073709551616", b"null"];
    let m = Mutator::new(seeds, &dict);
    let docs: Vec<serde_json::Value> = m.seeds().iter().map(|s| serde_json::from_slice(s).unwrap()).collect();
    let out = Campaign::new("model.json").run_with(m.seeds(), roli_fuzz::json::cases(&docs, &m), |b| {
        let text = std::str::from_utf8(b).map_err(|e| e.to_string())?;
        let s = parse_sidecar(PathBuf::from("model.json"), text).map_err(|e| e.to_string())?;
        s.descriptor.validate().map_err(|e| e.to_string())
    });
    out.assert_clean();
}

// Regressions and "a header claiming 10¹² elements is an error before any allocation", one per
// container, each with the exact input.

fn flat_with_pickle(edit: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let archive = entries(&seed_file("flat.pt"));
    let pkl = &archive.iter().find(|(n, _)| n.ends_with("/data.pkl")).unwrap().1;
    write_zip(&archive, &edit(pkl))
}

fn replace(b: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = b.windows(from.len()).position(|w| w == from).expect("pattern in the seed pickle");
    [&b[..i], to, &b[i + from.len()..]].concat()
}

fn timed_error(b: &[u8]) -> String {
    let t = std::time::Instant::now();
    let e = parse_state_dict(Path::new("claim.pt"), b).expect_err("must be refused").to_string();
    assert!(t.elapsed().as_secs() < 2, "{e}");
    e
}

#[test]
fn storage_claiming_2_pow_62_elements_is_refused_before_libtorch_allocates() {
    // Was: 2⁶² × 4 bytes wrapped to 0 ≤ the storage's 48 bytes, and libtorch was asked for a
    // 2⁶²-element tensor (an overflow panic with overflow checks on, as under cargo-fuzz).
    let zip = flat_with_pickle(|p| {
        replace(p, b"cpuq\x07K\x0ctq\x08", &[&b"cpuq\x07\x8a\x08"[..], &(1u64 << 62).to_le_bytes(), b"tq\x08"].concat())
    });
    assert!(timed_error(&zip).contains("claims 4611686018427387904 elements"));
}

#[test]
fn tensor_view_claiming_1e12_elements_is_refused_before_the_copy() {
    // Was: size (10⁶, 10⁶) with strides (0, 0) fits in any storage, and the contiguous copy
    // asked libtorch for 4 TB.
    let million = 1_000_000i32.to_le_bytes();
    let zip = flat_with_pickle(|p| {
        let size = [&b"J"[..], &million, b"J", &million, b"\x86q\tK\x00K\x00\x86"].concat();
        replace(p, b"K\x03K\x04\x86q\tK\x04K\x01\x86", &size)
    });
    assert!(timed_error(&zip).contains("is invalid for its storage"));
}

#[test]
fn safetensors_header_claiming_1e12_elements_is_refused() {
    let header = br#"{"a":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4]}}"#;
    let b = [&(header.len() as u64).to_le_bytes()[..], header, &[0u8; 4]].concat();
    assert!(timed_error(&b).contains("corrupt"));
}

#[test]
fn deeply_nested_pickles_are_refused_not_a_stack_overflow() {
    // Regression: 200,000 nested TUPLE1 opcodes loaded, then dropping the value (or popping it
    // with POP, or a failed REDUCE) recursed 200,000 frames deep and aborted the process.
    // Runs on a thread with a 2 MiB stack, as small as a test thread's.
    let deep = |tail: &[u8]| [&b"\x80\x02N"[..], &vec![0x85; 200_000], tail].concat();
    let cases = [
        ("returned", deep(b".")),
        ("popped", deep(b"0N.")),
        ("bad REDUCE", deep(b"R.")),
        ("memo kept", deep(b"q\x00N.")),
        ("dict of it", [&b"\x80\x02}"[..], &deep(b"N"), b"s."].concat()),
    ];
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            for (what, pkl) in cases {
                let r = parse_state_dict(Path::new("deep.pt"), &flat_with_pickle(|_| pkl.clone()));
                if what == "returned" || what == "dict of it" {
                    let e = r.expect_err("refused").to_string();
                    assert!(e.contains("deeper than 512"), "{what}: {e}");
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn memo_copies_of_a_long_string_are_bounded() {
    // Regression: one 32 KB string memoised, then 16,000 × BINGET: 16,000 deep copies (512 MB
    // held at once from a 64 KB pickle). Now a "billion laughs" error.
    let pkl = [&b"\x80\x02X\x00\x80\x00\x00"[..], &[b'a'; 32_768], b"q\x00", &b"h\x00".repeat(16_000), b"."].concat();
    let e = timed_error(&flat_with_pickle(|_| pkl.clone()));
    assert!(e.contains("billion laughs"), "{e}");
}
