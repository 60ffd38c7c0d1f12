//! Fuzzing roli-data's parsers on stable Rust (issue 14): IDX (raw and gzip), CIFAR binary,
//! CIFAR python pickles and the reference repo's JSON splits. Each parser gets 10,000 mutated
//! cases of small real-format seeds (`ROLI_FUZZ_CASES` changes that) and must never panic, hang
//! or make an allocation above 64 MiB (the capped allocator below aborts naming the case).
//! `cargo test --release -p roli-data --test fuzz -- --nocapture` prints cases and wall time per
//! parser; `docs/fuzzing.md` has the measured numbers and the cargo-fuzz targets for long runs.
use roli_data::cifar::{self, CifarKind, PIXELS};
use roli_data::{idx, pickle};
use roli_fuzz::{Campaign, Mutator};
use std::io::Write;
use std::path::Path;

#[global_allocator]
static ALLOC: roli_fuzz::CapAlloc = roli_fuzz::CapAlloc;

fn seed_file(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_seeds").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

fn pixels(n: usize) -> Vec<u8> {
    (0..n * PIXELS).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn idx() {
    let images = idx::encode_idx(&[2, 28, 28], &pixels(1)[..2 * 28 * 28]);
    let labels = idx::encode_idx(&[5], &[0, 1, 2, 3, 9]);
    let seeds = vec![images.clone(), labels.clone(), gzip(&images), gzip(&labels)];
    let m = Mutator::new(seeds, &[&[0, 0, 8, 3], &[0, 0, 8, 1], &[0x1f, 0x8b, 8, 0], &[0xff; 4]]);
    let out = Campaign::new("idx").run(&m, |b| {
        let a = idx::decode_idx(b.to_vec())?;
        // An accepted file is consistent: the header's shape is exactly the data.
        assert_eq!(a.dims.iter().product::<usize>(), a.data.len(), "dims {:?}", a.dims);
        Ok::<_, String>(a)
    });
    out.assert_clean();
}

#[test]
fn cifar_binary() {
    let c10 = cifar::encode_binary(CifarKind::Cifar10, &pixels(2), &[3, 9]);
    let c100 = cifar::encode_binary(CifarKind::Cifar100, &pixels(1), &[77]);
    let m = Mutator::new(vec![c10, c100], &[&[99], &[10], &[0xff]]);
    let p = Path::new("fuzz.bin");
    let out = Campaign::new("cifar-binary").run(&m, |b| {
        let ten = cifar::parse_binary(p, b, CifarKind::Cifar10).map(|r| check_batch(r, 10));
        let hundred = cifar::parse_binary(p, b, CifarKind::Cifar100).map(|r| check_batch(r, 100));
        ten.or(hundred)
    });
    out.assert_clean();
}

/// An accepted batch is consistent: one 3072-byte image per label, every label a class.
fn check_batch((px, labels): (Vec<u8>, Vec<i64>), classes: i64) {
    assert_eq!(px.len(), labels.len() * PIXELS);
    assert!(labels.iter().all(|l| (0..classes).contains(l)), "{labels:?}");
}

/// The Python-2 `cPickle` shape of the official files (BINSTRING data), hand-assembled.
fn python2_style() -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'U', 6];
    p.extend(b"labels");
    p.extend([b']', b'q', 1, b'(', b'K', 1, b'K', 7, b'e']);
    p.extend([b'U', 4]);
    p.extend(b"data");
    p.extend(b"cnumpy.core.multiarray\n_reconstruct\nq\x02");
    p.extend([b')', b'R', b'q', 3]);
    p.extend([b'(', b'K', 1, b'K', 2, b'M', 0x00, 0x0c, 0x86, b'N', 0x89, b'T']);
    p.extend((2 * PIXELS as u32).to_le_bytes());
    p.extend(pixels(2));
    p.extend([b't', b'b', b'u', b'.']);
    p
}

fn pickle_dictionary() -> Vec<&'static [u8]> {
    vec![
        b"(",
        b")",
        b"]",
        b"}",
        b"t",
        b"l",
        b"d",
        b"a",
        b"e",
        b"s",
        b"u",
        b"R",
        b"b",
        b"h\x00",
        b"h\x01",
        b"q\x00",
        b"j\xff\xff\xff\xff",
        b"r\xff\xff\xff\x7f",
        b"\x94",
        b"\x85",
        b"\x86",
        b"\x87",
        b"N",
        b".",
        b"T\xff\xff\xff\xff",
        b"B\x00\x00\x00\x80",
        b"X\xff\xff\xff\x7f",
        b"\x8a\x09",
        b"\x95\xff\xff\xff\xff\xff\xff\xff\xff",
        b"c_codecs\nencode\n",
        b"\x93",
    ]
}

#[test]
fn cifar_python() {
    let seeds =
        vec![python2_style(), seed_file("cifar10_p2.pkl"), seed_file("cifar10_p4.pkl"), seed_file("cifar100_p2.pkl")];
    let m = Mutator::new(seeds, &pickle_dictionary());
    let p = Path::new("fuzz_batch");
    let out = Campaign::new("cifar-python").run(&m, |b| {
        cifar::parse_python(p, b, CifarKind::Cifar10)
            .map(|r| check_batch(r, 10))
            .or_else(|_| cifar::parse_python(p, b, CifarKind::Cifar100).map(|r| check_batch(r, 100)))
    });
    out.assert_clean();
}

#[test]
fn pickle_machine() {
    // The raw pickle machine, also on inputs the CIFAR layer would reject early.
    let seeds = vec![
        python2_style(),
        seed_file("cifar10_p4.pkl"),
        b"\x80\x02]q\x00(K\x01K\x02e.".to_vec(),
        // Memo doubling and nesting, which duplication mutations repeat.
        b"\x80\x02]q\x00h\x00h\x00\x86q\x00h\x00h\x00\x86q\x00N\x85\x85\x85](]]e.".to_vec(),
    ];
    let m = Mutator::new(seeds, &pickle_dictionary());
    Campaign::new("pickle").run(&m, pickle::parse).assert_clean();
}

#[test]
fn json_split() {
    let seeds = vec![
        br#"{"b/1.jpg": "132", "a/2.jpg": "001", "c/3.jpg": "132", "d/4.jpg": "010"}"#.to_vec(),
        br#"{"x": 111, "y": 1, "z": 20, "w/\u00e9.png": -5}"#.to_vec(),
    ];
    let dict: [&[u8]; 12] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b",",
        b":",
        b"1e999",
        b"-9223372036854775809",
        b"null",
        b"[[[[[[[[",
        b"\\u0000",
    ];
    let m = Mutator::new(seeds, &dict);
    let docs: Vec<serde_json::Value> = m.seeds().iter().map(|s| serde_json::from_slice(s).unwrap()).collect();
    let out = Campaign::new("json-split").run_with(m.seeds(), roli_fuzz::json::cases(&docs, &m), |b| {
        let text = std::str::from_utf8(b).map_err(|e| e.to_string())?;
        let (items, names) = roli_data::json_split::parse_json_split(text)?;
        assert!(items.iter().all(|(_, id)| (0..names.len() as i64).contains(id)));
        Ok::<_, String>(())
    });
    out.assert_clean();
}

#[test]
fn cifar_python_shape_claiming_1e12_images_is_an_error_before_any_allocation() {
    // The numpy shape (10¹², 3072) over 2 images' bytes: refused by comparing with the bytes
    // actually present, nothing sized by the claim is allocated (the capped allocator would abort).
    let p = python2_style();
    let shape = [b'K', 1, b'K', 2, b'M', 0x00, 0x0c, 0x86];
    let i = p.windows(shape.len()).position(|w| w == shape).expect("shape in the seed");
    let claim = [&[b'K', 1, 0x8a, 8][..], &1_000_000_000_000u64.to_le_bytes(), &[b'M', 0x00, 0x0c, 0x86]].concat();
    let bad = [&p[..i], &claim, &p[i + shape.len()..]].concat();
    let t = std::time::Instant::now();
    let e = cifar::parse_python(Path::new("data_batch_1"), &bad, CifarKind::Cifar10).unwrap_err().to_string();
    assert!(e.contains("1000000000000") && e.contains("do not match"), "{e}");
    assert!(t.elapsed().as_secs() < 1);
}
