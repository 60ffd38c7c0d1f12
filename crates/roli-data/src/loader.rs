//! Seeded shuffling and batching. The order is a pure function of (n, batch size, seed, epoch),
//! so a resumed run sees exactly the batches an uninterrupted run would have seen.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// How to cut `n` examples into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlan {
    pub n: usize,
    pub batch_size: usize,
    /// `Some(seed)`: shuffle each epoch with an RNG derived from (seed, epoch); `None`: in order.
    pub shuffle_seed: Option<u64>,
    /// Drop a last, smaller batch (the reference keeps it: `drop_last=False`).
    pub drop_last: bool,
}

impl BatchPlan {
    pub fn sequential(n: usize, batch_size: usize) -> Self {
        BatchPlan { n, batch_size: batch_size.max(1), shuffle_seed: None, drop_last: false }
    }
    pub fn shuffled(n: usize, batch_size: usize, seed: u64) -> Self {
        BatchPlan { n, batch_size: batch_size.max(1), shuffle_seed: Some(seed), drop_last: false }
    }

    /// Index batches for `epoch`.
    pub fn batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.n).collect();
        if let Some(seed) = self.shuffle_seed {
            order.shuffle(&mut epoch_rng(seed, epoch, 0));
        }
        let mut out: Vec<Vec<usize>> = order.chunks(self.batch_size.max(1)).map(|c| c.to_vec()).collect();
        if self.drop_last && out.last().is_some_and(|b| b.len() < self.batch_size) {
            out.pop();
        }
        out
    }

    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.n / self.batch_size.max(1)
        } else {
            self.n.div_ceil(self.batch_size.max(1))
        }
    }
}

/// An RNG for (seed, epoch, stream): independent streams (shuffle, augmentation, …) that do not
/// shift when another stream draws more numbers.
pub fn epoch_rng(seed: u64, epoch: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream.wrapping_mul(0x9E37_79B9).wrapping_add(1));
    rng.set_word_pos((epoch as u128) << 32);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_every_index_once() {
        let p = BatchPlan::shuffled(103, 10, 7);
        let b = p.batches(0);
        assert_eq!(b.len(), 11);
        assert_eq!(b.len(), p.num_batches());
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
    }

    #[test]
    fn same_seed_same_order_other_epoch_other_order() {
        let p = BatchPlan::shuffled(50, 8, 3);
        assert_eq!(p.batches(2), p.batches(2));
        assert_ne!(p.batches(2), p.batches(3));
        assert_ne!(p.batches(2), BatchPlan::shuffled(50, 8, 4).batches(2));
        assert_eq!(BatchPlan::sequential(5, 2).batches(9), vec![vec![0, 1], vec![2, 3], vec![4]]);
    }

    #[test]
    fn drop_last() {
        let p = BatchPlan { n: 10, batch_size: 4, shuffle_seed: None, drop_last: true };
        assert_eq!(p.batches(0).len(), 2);
        assert_eq!(p.num_batches(), 2);
    }
}
