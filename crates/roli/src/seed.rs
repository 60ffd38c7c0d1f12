//! The project's seeding scheme: every random choice of a run follows from the config's one
//! `seed` through [`derive_seed`], so a run (and a resumed run) is reproducible on CPU.
//!
//! The word lists in use (`seed` is the run's config seed, `stage` a stage's derived seed):
//!
//! | words                                  | what it seeds                                          |
//! |----------------------------------------|--------------------------------------------------------|
//! | `[seed, method, init]`                 | a stage's seed (`StagePlan::seed`): `Method` 0–5, `Init` 0/1 as `u64` |
//! | `[seed, INIT]` (7)                     | the model build: a random backbone; that seed + 1 the head and PEFT modules |
//! | `[seed, TEST]` (99)                    | the test evaluation (PGD and AutoAttack random starts) |
//! | `[seed, EPS_CURVE]` (98)               | the robustness-vs-eps sweep                            |
//! | `[stage, epoch, batch, BATCH_ATTACK]` (1) | the training PGD's random start of that batch       |
//! | `[stage, epoch, batch, BATCH_FORWARD]` (2) | the training forward: dropout, drop-path, prompt dropout |
//! | `[stage, epoch, EPOCH_VALIDATION]` (3) | that epoch's validation PGD, then `[that, batch]` per validation batch |
//!
//! The two per-batch streams reseed libtorch's global generator (`tch::manual_seed`) right before
//! their use. The shuffle and the data augmentation are not drawn from these seeds but from
//! `roli_data::loader::epoch_rng(stage, epoch, stream)` (ChaCha8): stream 0 the epoch's order,
//! stream 1 the augmentation.
//!
//! The numeric words are part of every saved run's identity: changing one changes results.

/// Second word of `[seed, ·]`: the model build's initialisation seed (`BuildOptions::init_seed`).
pub const INIT: u64 = 7;
/// Second word of `[seed, ·]`: the test evaluation's seed.
pub const TEST: u64 = 99;
/// Second word of `[seed, ·]`: the robustness-vs-eps curve's seed.
pub const EPS_CURVE: u64 = 98;
/// Last word of `[stage, epoch, batch, ·]`: the training attack's random start.
pub const BATCH_ATTACK: u64 = 1;
/// Last word of `[stage, epoch, batch, ·]`: the training forward's randomness (dropout, drop-path).
pub const BATCH_FORWARD: u64 = 2;
/// Last word of `[stage, epoch, ·]`: the epoch's validation attack.
pub const EPOCH_VALIDATION: u64 = 3;

/// splitmix64 of several words: independent seeds per (stage, epoch, batch, purpose).
pub fn derive_seed(parts: &[u64]) -> u64 {
    let mut z: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        z = z.wrapping_add(p).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned: a change here silently changes every run's results.
    #[test]
    fn known_values_are_stable() {
        assert_eq!(derive_seed(&[]), 0x9E37_79B9_7F4A_7C15);
        // One word 0 is splitmix64's second output from state 0.
        assert_eq!(derive_seed(&[0]), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(derive_seed(&[0, INIT]), 0xE803_A7BB_7BFB_A0B1);
        assert_eq!(derive_seed(&[0, TEST]), 0x1538_9A7F_1D14_9E4E);
        assert_eq!(derive_seed(&[0, EPS_CURVE]), 0xD30F_7A40_ACFB_A3AC);
        assert_eq!(derive_seed(&[0, 1, 0]), 0x3FDB_8CD3_0D6B_C5E5);
        assert_eq!(derive_seed(&[0, 1, 1]), 0x6677_C041_F52E_6B2F);
        assert_eq!(derive_seed(&[42, 3, 5, BATCH_ATTACK]), 0x5488_9C4A_8E5C_FA51);
        assert_eq!(derive_seed(&[42, 3, 5, BATCH_FORWARD]), 0x6E9C_E212_965F_EB26);
        assert_eq!(derive_seed(&[42, 3, EPOCH_VALIDATION]), 0x2694_8AAE_4CCA_35EB);
        assert_eq!(derive_seed(&[u64::MAX, 0]), 0x7F46_A57C_92DB_EE5F);
    }

    #[test]
    fn purpose_words_keep_their_values() {
        assert_eq!((INIT, TEST, EPS_CURVE), (7, 99, 98));
        assert_eq!((BATCH_ATTACK, BATCH_FORWARD, EPOCH_VALIDATION), (1, 2, 3));
    }

    #[test]
    fn different_inputs_give_different_seeds() {
        let lists: Vec<Vec<u64>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![0, 1],
            vec![1, 0],
            vec![0, INIT],
            vec![0, TEST],
            vec![0, EPS_CURVE],
            vec![5, 1, 2, BATCH_ATTACK],
            vec![5, 1, 2, BATCH_FORWARD],
            vec![5, 1, EPOCH_VALIDATION],
            vec![5, 2, 1, BATCH_ATTACK],
        ];
        let seeds: std::collections::HashSet<u64> = lists.iter().map(|l| derive_seed(l)).collect();
        assert_eq!(seeds.len(), lists.len());
        // Order matters and neighbouring epochs/batches differ.
        let per_batch: std::collections::HashSet<u64> =
            (0..20).flat_map(|e| (0..50).map(move |b| derive_seed(&[9, e, b, BATCH_ATTACK]))).collect();
        assert_eq!(per_batch.len(), 20 * 50);
    }
}
