//! Several seeds of one study: `seeds = [0, 1, 2]` in a config or `--seeds 0,1,2` on `roli run` /
//! `roli demo`. Each seed is the same study with `seed = s` (stage-1 and stage-2 streams, head
//! init, data order and attack starts all derive from it; the test subset does not, so every seed
//! is scored on the same examples and the report can pair them).
//!
//! Which seed wins: in one file, `seed` and `seeds` together are ambiguous (an error); the command
//! line beats the file (`--seeds`, `--set seeds=[…]` or `--set seed=N` replace whichever of the two
//! the file has, so `roli demo --set seed=1` is a one-seed run), and two answers on the command
//! line are an error. One seed keeps the one-study layout; several seeds run each study in
//! `DIR/seed-<s>/` (`crate::study::seeds`).
use crate::config::RunConfig;
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// `eval.aa_seeds`: which seeds of a multi-seed study run AutoAttack and the eps curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AaSeeds {
    /// Every seed runs the configured evaluation.
    #[default]
    All,
    /// Only the first seed; the later ones test with PGD only (AutoAttack costs more than a
    /// parameter-efficient model's training at the demo's size).
    First,
}

/// The two keys that choose seeds.
const KEYS: [&str; 2] = ["seed", "seeds"];

/// The key an override `key=value` sets, if it is `seed` or `seeds`.
pub fn seed_key(assignment: &str) -> Option<&str> {
    let key = assignment.split_once('=').map(|(k, _)| k.trim())?;
    KEYS.iter().copied().find(|k| *k == key)
}

/// Applies the precedence rules to the file's TOML tree before the overrides: refuses `seed` and
/// `seeds` together in the file or on the command line, and removes the file's keys when the
/// command line chooses the seeds.
pub fn settle_seed_keys(tree: &mut toml::Table, overrides: &[String], origin: &str) -> anyhow::Result<()> {
    if tree.contains_key("seed") && tree.contains_key("seeds") {
        bail!("{origin}: both `seed` and `seeds` are set; keep one (`seeds = [0, 1, 2]` runs the study once per seed)");
    }
    let chosen: Vec<&str> = overrides.iter().filter_map(|o| seed_key(o)).collect();
    if chosen.len() > 1 {
        bail!(
            "the command line sets the seeds twice ({}); give one of --seeds, --set seed=N, --set seeds=[…]",
            chosen.join(", ")
        );
    }
    if !chosen.is_empty() {
        for k in KEYS {
            tree.remove(k);
        }
    }
    if let Some(toml::Value::Array(a)) = tree.get("seeds") {
        if a.is_empty() {
            bail!("{origin}: `seeds = []` lists no seed; list at least one, or use `seed = N`");
        }
    }
    Ok(())
}

/// `--seeds 0,1,2` as the override `seeds=[0,1,2]`, refused next to `--set seed…`.
pub fn with_seeds(set: &[String], seeds: &[u64]) -> anyhow::Result<Vec<String>> {
    if seeds.is_empty() {
        return Ok(set.to_vec());
    }
    if let Some(o) = set.iter().find(|o| seed_key(o).is_some()) {
        bail!("--seeds and --set {o} both choose the seeds; give one");
    }
    let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
    Ok(set.iter().cloned().chain([format!("seeds=[{}]", list.join(","))]).collect())
}

/// Seed lists that cannot run: a seed twice (its folder would be shared).
pub fn validate(cfg: &RunConfig) -> anyhow::Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    if let Some(s) = cfg.seeds.iter().find(|s| !seen.insert(**s)) {
        bail!("seeds = {:?} lists seed {s} twice; list each seed once", cfg.seeds);
    }
    if cfg.finetune.extra_seed_methods.iter().any(|m| !cfg.finetune.methods.contains(m)) {
        bail!(
            "finetune.extra_seed_methods = {:?} must be a subset of finetune.methods = {:?}",
            cfg.finetune.extra_seed_methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            cfg.finetune.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// `config.resolved.toml`: every default written out, in the config's field order; a multi-seed
/// config writes `seeds` and leaves out `seed` (which it does not use), so the file reads back
/// without ambiguity.
pub fn resolved_toml(cfg: &RunConfig) -> String {
    let text = toml::to_string_pretty(cfg).unwrap_or_default();
    if cfg.seeds.is_empty() {
        return text;
    }
    // `seed` is a top-level key: it sits among the lines before the first table header.
    let mut in_top = true;
    text.lines()
        .filter(|l| {
            in_top &= !l.starts_with('[');
            !(in_top && l.starts_with("seed ="))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

impl RunConfig {
    /// The seeds the study runs: `seeds`, or `[seed]`.
    pub fn seed_list(&self) -> Vec<u64> {
        if self.seeds.is_empty() {
            vec![self.seed]
        } else {
            self.seeds.clone()
        }
    }

    /// Whether the study runs over several seeds (`DIR/seed-<s>/` layout).
    pub fn is_multi_seed(&self) -> bool {
        self.seed_list().len() > 1
    }

    /// The one-seed study of seed `s`: the first seed (`first`) runs everything; a later one
    /// trains `finetune.extra_seed_methods` (if set) and skips AutoAttack and the eps curve under
    /// `eval.aa_seeds = "first"`. The seed keys are reset, so the first seed's study is exactly
    /// the one-seed run of the same config.
    pub fn for_seed(&self, s: u64, first: bool) -> RunConfig {
        let mut c = self.clone();
        c.seed = s;
        c.seeds = Vec::new();
        c.eval.aa_seeds = AaSeeds::default();
        c.finetune.extra_seed_methods = Vec::new();
        if !first {
            if !self.finetune.extra_seed_methods.is_empty() {
                c.finetune.methods = self.finetune.extra_seed_methods.clone();
            }
            if self.eval.aa_seeds == AaSeeds::First {
                c.eval.autoattack = crate::config::AutoAttackChoice::None;
                c.eval.eps_curve = Vec::new();
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[data]\nname = \"fashion-mnist\"\n[model]\nbackbone = \"lenet5_advertorch\"\n";

    fn cfg(text: &str, set: &[&str]) -> anyhow::Result<RunConfig> {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        RunConfig::from_toml_str(text, &set, "t.toml")
    }

    #[test]
    fn file_and_command_line_precedence() {
        let multi = format!("seeds = [0, 1, 2]\n{MIN}");
        assert_eq!(cfg(&multi, &[]).unwrap().seed_list(), vec![0, 1, 2]);
        assert_eq!(cfg(&format!("seed = 4\n{MIN}"), &[]).unwrap().seed_list(), vec![4]);
        // Both in one file: ambiguous.
        let e = format!("{:#}", cfg(&format!("seed = 1\nseeds = [0, 1]\n{MIN}"), &[]).unwrap_err());
        assert!(e.contains("t.toml") && e.contains("both `seed` and `seeds`") && !e.contains('\n'), "{e}");
        // The command line replaces the file's choice, either way round.
        assert_eq!(cfg(&multi, &["seed=5"]).unwrap().seed_list(), vec![5]);
        assert_eq!(cfg(&format!("seed = 4\n{MIN}"), &["seeds=[1,2]"]).unwrap().seed_list(), vec![1, 2]);
        // Twice on the command line: an error naming both.
        let e = format!("{:#}", cfg(MIN, &["seed=1", "seeds=[2,3]"]).unwrap_err());
        assert!(e.contains("seed, seeds"), "{e}");
        let e = with_seeds(&["seed=1".into()], &[0, 1]).unwrap_err().to_string();
        assert!(e.contains("--seeds and --set seed=1"), "{e}");
        assert_eq!(with_seeds(&["data.name=x".into()], &[0, 2]).unwrap(), vec!["data.name=x", "seeds=[0,2]"]);
        let over = with_seeds(&[], &[3, 1]).unwrap();
        assert_eq!(cfg(&multi, &over.iter().map(String::as_str).collect::<Vec<_>>()).unwrap().seed_list(), vec![3, 1]);
        // Empty and repeated lists.
        assert!(format!("{:#}", cfg(&format!("seeds = []\n{MIN}"), &[]).unwrap_err()).contains("lists no seed"));
        assert!(format!("{:#}", cfg(MIN, &["seeds=[1,1]"]).unwrap_err()).contains("seed 1 twice"));
    }

    fn plain_text_order(t: &str) -> bool {
        t.starts_with("name = ") && t.find("seed = ") < t.find("[data]")
    }

    #[test]
    fn resolved_multi_seed_config_reads_back_and_one_seed_equals_the_plain_run() {
        let c =
            cfg(MIN, &["seeds=[0,1]", "eval.aa_seeds=\"first\"", "finetune.extra_seed_methods=[\"bias\"]"]).unwrap();
        let text = c.to_resolved_toml();
        assert!(text.contains("seeds = [") && !text.lines().any(|l| l.starts_with("seed =")), "{text}");
        // Field order, as a one-seed file: `name` first, then the tables.
        assert!(text.starts_with("name = ") && plain_text_order(&cfg(MIN, &[]).unwrap().to_resolved_toml()), "{text}");
        assert_eq!(cfg(&text, &[]).unwrap(), c);
        // Seed 0 of the multi-seed study is the plain one-seed run of the same config.
        let plain = cfg(MIN, &[]).unwrap();
        assert_eq!(c.for_seed(0, true), plain);
        assert!(crate::config::same_settings(&plain.to_resolved_toml(), &c.for_seed(0, true).to_resolved_toml()));
        // A later seed: its own seed, the extra methods, no AutoAttack.
        let later = c.for_seed(1, false);
        assert_eq!(later.seed, 1);
        assert_eq!(later.finetune.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(), ["bias"]);
        assert_eq!(later.eval.autoattack, crate::config::AutoAttackChoice::None);
        assert!(format!(
            "{:#}",
            cfg(MIN, &["finetune.methods=[\"full\"]", "finetune.extra_seed_methods=[\"bias\"]"]).unwrap_err()
        )
        .contains("subset"));
    }
}
