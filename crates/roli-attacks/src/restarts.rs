//! The restart loop shared by PGD, APGD, FAB and Square.
//!
//! Each of these attacks runs several rounds (restarts, and for the targeted versions one series of
//! restarts per target class). A round attacks only the points still robust, always starting from
//! their clean inputs, and the points it fools leave the robust set and keep that round's output.
//! Written once here so the four attacks cannot drift apart.
//!
//! What the loop deliberately does *not* do, because the attacks differ there and the official code
//! they reproduce does too: seeding (the caller seeds, before or after its clean pass as the
//! reference does), deciding which points start robust (APGD and FAB reuse their clean logits), and
//! deciding what counts as fooled (APGD trusts its run's own accuracy, FAB also needs the
//! perturbation within eps, PGD and Square re-classify). PGD additionally keeps, for points no round
//! fooled, the highest-loss iterate over rounds: that is the [`Round::keep`] mask.

use crate::attack::{nonzero1, put};
use crate::AttackError;
use tch::Tensor;

/// The still-robust points a round attacks.
pub(crate) struct Robust {
    /// Their positions in the batch, int64 `[M]`.
    pub idx: Tensor,
    /// Their clean inputs `[M, ...]`.
    pub x: Tensor,
    /// Their labels `[M]`.
    pub y: Tensor,
}

/// What one round returns for the points it attacked.
pub(crate) struct Round {
    /// The round's output `[M, ...]`.
    pub x_adv: Tensor,
    /// Bool `[M]`: the points this round fooled; they leave the robust set.
    pub fooled: Tensor,
    /// Bool `[M]`: the outputs to write back; `None` writes back exactly the fooled ones.
    /// PGD passes "fooled or higher loss than any earlier round" to keep its per-example best.
    pub keep: Option<Tensor>,
}

/// Runs `one_round` once per item of `rounds` on the points of `robust` (bool `[N]`) that are still
/// robust, and returns `x` with the kept outputs written in. Stops early once no point is robust:
/// a round on no points would draw no random numbers and call no model, so this changes nothing.
pub(crate) fn restart_loop<R>(
    x: &Tensor,
    y: &Tensor,
    mut robust: Tensor,
    rounds: impl IntoIterator<Item = R>,
    mut one_round: impl FnMut(R, &Robust) -> Result<Round, AttackError>,
) -> Result<Tensor, AttackError> {
    let mut adv = x.copy();
    for r in rounds {
        let idx = nonzero1(&robust);
        if idx.numel() == 0 {
            break;
        }
        let batch = Robust { x: x.index_select(0, &idx), y: y.index_select(0, &idx), idx };
        let out = one_round(r, &batch)?;
        let take = nonzero1(out.keep.as_ref().unwrap_or(&out.fooled));
        put(&mut adv, &batch.idx.index_select(0, &take), &out.x_adv.index_select(0, &take));
        let newly = batch.idx.index_select(0, &nonzero1(&out.fooled));
        if newly.numel() > 0 {
            let _ = robust.index_fill_(0, &newly, 0);
        }
    }
    Ok(adv)
}
