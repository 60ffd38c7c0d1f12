//! The mutation engine: turns small real seed files into damaged ones.
//!
//! A case is either pure random bytes (1 in 10) or a seed with 1–4 stacked mutations (bit flips,
//! byte sets, integer overwrites, truncations, deletions, insertions, duplications, a short
//! range repeated up to 4,000 times, crossover with another seed, dictionary tokens). Half of
//! the position choices fall in the first 64 bytes, where headers and their length fields live;
//! integer overwrites use boundary and huge values (0, −1, 2³¹, 2³², 10¹², `u64::MAX`) in both
//! byte orders, so "a header claiming 10¹² elements" is tried for every length field.
use crate::rng::Rng;

/// Integers written over length fields (as u16/u32/u64, little- and big-endian).
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1_000_000_000_000,
    i64::MAX as u64,
    u64::MAX,
];

/// Largest input a case produces (the seeds are a few KB; this bounds growth by splices).
pub const MAX_LEN: usize = 64 * 1024;

/// A mutation engine over a set of seed inputs and a per-format dictionary of tokens
/// (opcodes, keywords, numbers) that byte-level mutations rarely hit on their own.
#[derive(Debug, Clone)]
pub struct Mutator {
    seeds: Vec<Vec<u8>>,
    dictionary: Vec<Vec<u8>>,
}

impl Mutator {
    /// `seeds` must not be empty.
    pub fn new(seeds: Vec<Vec<u8>>, dictionary: &[&[u8]]) -> Self {
        assert!(!seeds.is_empty(), "a fuzz campaign needs at least one seed");
        Mutator { seeds, dictionary: dictionary.iter().map(|t| t.to_vec()).collect() }
    }

    /// The seed inputs.
    pub fn seeds(&self) -> &[Vec<u8>] {
        &self.seeds
    }

    /// The input of one case.
    pub fn case(&self, rng: &mut Rng) -> Vec<u8> {
        if rng.chance(1, 10) {
            let n = rng.below(2049);
            return (0..n).map(|_| rng.byte()).collect();
        }
        let mut b = self.seeds[rng.below(self.seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            self.mutate_once(&mut b, rng);
        }
        b.truncate(MAX_LEN);
        b
    }

    fn pos(b: &[u8], rng: &mut Rng) -> usize {
        if rng.chance(1, 2) {
            rng.below(b.len().min(64))
        } else {
            rng.below(b.len())
        }
    }

    fn mutate_once(&self, b: &mut Vec<u8>, rng: &mut Rng) {
        if b.is_empty() {
            b.extend((0..1 + rng.below(16)).map(|_| rng.byte()));
            return;
        }
        match rng.below(11) {
            0 => {
                let p = Self::pos(b, rng);
                b[p] ^= 1 << rng.below(8);
            }
            1 => {
                let p = Self::pos(b, rng);
                b[p] = [0, 0xff, 0x7f, 0x80, rng.byte()][rng.below(5)];
            }
            2 => {
                let p = Self::pos(b, rng);
                overwrite_int(b, p, rng)
            }
            3 => b.truncate(rng.below(b.len())),
            4 => {
                let p = rng.below(b.len());
                let n = 1 + rng.below((b.len() - p).min(256));
                b.drain(p..p + n);
            }
            5 => {
                let p = rng.below(b.len() + 1);
                let junk: Vec<u8> = (0..1 + rng.below(32)).map(|_| rng.byte()).collect();
                b.splice(p..p, junk);
            }
            6 => {
                // Duplicate a range (repeated records, nested containers).
                let s = rng.below(b.len());
                let n = 1 + rng.below((b.len() - s).min(512));
                let chunk = b[s..s + n].to_vec();
                let p = rng.below(b.len() + 1);
                b.splice(p..p, chunk);
            }
            10 => {
                // Repeat a short range up to 4,000 times: deep nesting, memo doubling, long runs
                // of records — what single duplications reach only after many generations.
                let s = rng.below(b.len());
                let n = 1 + rng.below((b.len() - s).min(16));
                let most = if rng.chance(1, 2) { 64 } else { 4000 };
                let times = 1 + rng.below(most);
                let chunk = b[s..s + n].repeat(times.min(MAX_LEN / n));
                b.splice(s..s, chunk);
            }
            7 => {
                // Crossover: a range of another seed replaces our tail.
                let other = &self.seeds[rng.below(self.seeds.len())];
                if !other.is_empty() {
                    let s = rng.below(other.len());
                    let p = rng.below(b.len() + 1);
                    b.truncate(p);
                    b.extend_from_slice(&other[s..]);
                }
            }
            _ => {
                if self.dictionary.is_empty() {
                    b.push(rng.byte());
                } else {
                    let tok = self.dictionary[rng.below(self.dictionary.len())].clone();
                    let p = rng.below(b.len() + 1);
                    if rng.chance(1, 2) {
                        b.splice(p..p, tok);
                    } else {
                        let end = (p + tok.len()).min(b.len());
                        b.splice(p..end, tok);
                    }
                }
            }
        }
    }
}

/// Overwrites 2, 4 or 8 bytes at `p` with an interesting integer in either byte order.
fn overwrite_int(b: &mut [u8], p: usize, rng: &mut Rng) {
    let v = INTERESTING[rng.below(INTERESTING.len())];
    let width = [2, 4, 8][rng.below(3)];
    let le = v.to_le_bytes();
    let be = v.to_be_bytes();
    let bytes: Vec<u8> = if rng.chance(1, 2) { le[..width].to_vec() } else { be[8 - width..].to_vec() };
    for (i, x) in bytes.into_iter().enumerate() {
        if let Some(slot) = b.get_mut(p + i) {
            *slot = x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_deterministic_varied_and_bounded() {
        let m = Mutator::new(vec![b"hello world, a seed of some length".to_vec()], &[b"{", b"}"]);
        let a = m.case(&mut Rng::for_case(3, "t", 11));
        assert_eq!(a, m.case(&mut Rng::for_case(3, "t", 11)));
        let distinct: std::collections::HashSet<Vec<u8>> =
            (0..500).map(|i| m.case(&mut Rng::for_case(3, "t", i))).collect();
        assert!(distinct.len() > 400, "{}", distinct.len());
        assert!(distinct.iter().all(|c| c.len() <= MAX_LEN));
    }

    #[test]
    fn huge_length_values_are_written() {
        let mut hits = 0;
        for i in 0..2000 {
            let mut b = vec![0u8; 16];
            overwrite_int(&mut b, 0, &mut Rng::for_case(0, "x", i));
            if b[..8] == 1_000_000_000_000u64.to_le_bytes() || b[..8] == u64::MAX.to_le_bytes() {
                hits += 1;
            }
        }
        assert!(hits > 50, "{hits}");
    }
}
