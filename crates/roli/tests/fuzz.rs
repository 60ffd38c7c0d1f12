//! Fuzzing the app's file parsers on stable Rust (issue 14): the TOML run config (parse,
//! `--set` overrides and validation), `head.json`, and `state.json` (through the same serde call
//! `artifacts::read_state` makes). 10,000 mutated cases per parser (`ROLI_FUZZ_CASES` changes
//! that); no panic, no hang, no allocation above 64 MiB (the capped allocator aborts naming the
//! case). `cargo test --release -p roli --test fuzz -- --nocapture` prints cases and wall time.
use roli::config::RunConfig;
use roli::head::{parse_meta, HeadArtifact, HEAD_FORMAT};
use roli::train::plan::StageState;
use roli_fuzz::{json, Campaign, Mutator, Rng};
use std::path::Path;

#[global_allocator]
static ALLOC: roli_fuzz::CapAlloc = roli_fuzz::CapAlloc;

const JSON_TOKENS: [&[u8]; 12] =
    [b"{", b"}", b"[", b"]", b"\"", b",", b":", b"1e999", b"-1", b"18446744073709551616", b"null", b"[[[[[[[[[["];

/// The seeds as JSON documents, for structural mutations.
fn json_docs(m: &Mutator) -> Vec<serde_json::Value> {
    m.seeds().iter().map(|s| serde_json::from_slice(s).expect("JSON seed")).collect()
}

fn text(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|e| e.to_string())
}

#[test]
fn toml_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let seeds: Vec<Vec<u8>> =
        ["configs/demo.toml", "configs/lenet-fmnist.toml", "configs/paper/full/cifar100_roli.toml"]
            .iter()
            .map(|f| std::fs::read(root.join(f)).unwrap())
            .collect();
    let dict: [&[u8]; 16] = [
        b"[",
        b"]",
        b"[[",
        b"]]",
        b"=",
        b"\"",
        b"'''",
        b"\n",
        b".",
        b"inf",
        b"nan",
        b"-1",
        b"1e308",
        b"9223372036854775807",
        b"18446744073709551616",
        b"{ a = [ [ [ [ 1 ] ] ] ] }",
    ];
    let m = Mutator::new(seeds, &dict);
    // Half the cases are structural: the config as JSON, one to three values swapped for extreme
    // or wrongly typed ones (json::mutate), written back as TOML, so validation is reached.
    let docs: Vec<serde_json::Value> = m
        .seeds()
        .iter()
        .map(|s| serde_json::to_value(toml::from_str::<toml::Table>(text(s).unwrap()).unwrap()).unwrap())
        .collect();
    let case = |rng: &mut Rng| {
        if rng.chance(1, 2) {
            return m.case(rng);
        }
        let mutated = json::mutate(&docs[rng.below(docs.len())], rng);
        let v: serde_json::Value = serde_json::from_slice(&mutated).unwrap_or_default();
        toml::to_string(&v).map(String::into_bytes).unwrap_or(mutated)
    };
    let out = Campaign::new("toml-config")
        .run_with(m.seeds(), case, |b| RunConfig::from_toml_str(text(b)?, &[], "fuzz.toml").map_err(|e| e.to_string()));
    out.assert_clean();
}

#[test]
fn set_overrides() {
    // `--set key=value` on a valid config: random keys and values from the config's own words.
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/demo.toml")).unwrap();
    let words: Vec<&str> = base
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
        .filter(|w| !w.is_empty())
        .collect();
    let seeds = vec![
        b"probe.epochs=3".to_vec(),
        b"threat.eps=0.5".to_vec(),
        b"finetune.methods=[\"full\",\"lora\",\"adapter\",\"prompt\"]".to_vec(),
    ];
    let m = Mutator::new(seeds.clone(), &[b"=", b".", b"[", b"\"", b"-1", b"1e400", b"{x=1}"]);
    let out = Campaign::new("toml-set").run(&m, |b| {
        let mut set = text(b)?.to_string();
        // Mix in a key of the real config so validation, not only parsing, is reached (not into
        // the seeds themselves, which must stay valid).
        let mut r = Rng::for_case(0, &set, 0);
        if !seeds.iter().any(|s| s.as_slice() == b) && r.chance(1, 2) {
            set = format!("{}={}", words[r.below(words.len())], set.split_once('=').map_or("1", |x| x.1));
        }
        RunConfig::from_toml_str(&base, &[set], "demo.toml").map_err(|e| e.to_string())
    });
    out.assert_clean();
}

fn head_seed() -> Vec<u8> {
    let h = HeadArtifact {
        format: HEAD_FORMAT.into(),
        version: 1,
        backbone: "zoo/vit-nano-mnist-at".into(),
        backbone_fingerprint: "abcdef0123456789".into(),
        num_classes: 10,
        feature_dim: 64,
        head_names: vec!["head.weight".into(), "head.bias".into()],
        threat_norm: "linf".into(),
        threat_eps: 0.1,
        data: "fashion-mnist".into(),
        train_fingerprint: "t".into(),
        val_fingerprint: "v".into(),
        best_epoch: Some(3),
        val_clean: 0.8,
        val_robust: 0.6,
    };
    serde_json::to_vec_pretty(&h).unwrap()
}

#[test]
fn head_json() {
    let m = Mutator::new(vec![head_seed()], &JSON_TOKENS);
    let out = Campaign::new("head.json").run_with(m.seeds(), json::cases(&json_docs(&m), &m), |b| {
        parse_meta(Path::new("head.json"), text(b)?).map_err(|e| e.to_string())
    });
    out.assert_clean();
}

#[test]
fn state_json() {
    let state = r#"{"plan_fingerprint":"9f2c","epochs_done":2,"optimizer_steps":40,"best_epoch":1,"best_val_robust":0.42,
"history":[{"epoch":0,"lr":0.1,"train_loss":2.1,"train_adv_accuracy":0.2,"val_clean":0.5,"val_robust":0.3,"seconds":1.5},
{"epoch":1,"lr":0.05,"train_loss":1.7,"train_adv_accuracy":0.3,"val_clean":0.6,"val_robust":0.42,"seconds":1.4}],
"trainability":{"nominal_tensors":2,"nominal_elements":650,"effective_elements":650,"dead_tensors":[]},"finished":false}"#;
    let m = Mutator::new(vec![state.as_bytes().to_vec()], &JSON_TOKENS);
    let out = Campaign::new("state.json").run_with(m.seeds(), json::cases(&json_docs(&m), &m), |b| {
        serde_json::from_slice::<StageState>(b).map_err(|e| e.to_string())
    });
    out.assert_clean();
}
