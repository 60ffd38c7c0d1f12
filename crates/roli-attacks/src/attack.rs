//! The attack trait and small tensor helpers shared by the attacks.

use crate::model::Model;
use crate::stage_id::StageId;
use crate::AttackError;
use tch::{Kind, Tensor};

/// An untargeted evasion attack with a fixed threat model.
///
/// `perturb` returns adversarial inputs of the same shape as `x`, inside the threat model and [0, 1].
/// Examples the attack could not fool may be returned unchanged (AutoAttack's convention) or at the
/// attack's best point; callers decide robustness by re-classifying the output. The seed is required:
/// attacks seed libtorch's global generator with it (as the official AutoAttack does), so one seed
/// gives one result on CPU. Attacks never run concurrently with other users of that generator.
pub trait Attack {
    /// The AutoAttack-style id of this attack.
    fn id(&self) -> StageId;
    /// Attacks `(x, y)`; `x` is `[N, C, H, W]` in [0, 1], `y` is `[N]` int64.
    fn perturb(&self, model: &dyn Model, x: &Tensor, y: &Tensor, seed: u64) -> Result<Tensor, AttackError>;
}

/// Checks shapes and kinds once, at the boundary.
pub(crate) fn check_inputs(x: &Tensor, y: &Tensor) -> Result<(), AttackError> {
    let xs = x.size();
    if xs.len() < 2 {
        return Err(AttackError::BadInput {
            what: "x",
            detail: format!("expected a batch [N, ...], got shape {xs:?}"),
        });
    }
    if y.size() != [xs[0]] {
        return Err(AttackError::BadInput {
            what: "y",
            detail: format!("expected labels of shape [{}], got {:?}", xs[0], y.size()),
        });
    }
    if y.kind() != Kind::Int64 {
        return Err(AttackError::BadInput { what: "y", detail: format!("labels must be int64, got {:?}", y.kind()) });
    }
    if x.kind() != Kind::Float {
        return Err(AttackError::BadInput { what: "x", detail: format!("inputs must be f32, got {:?}", x.kind()) });
    }
    Ok(())
}

/// Indices where a bool tensor is true, as an int64 vector `[M]`.
pub(crate) fn nonzero1(mask: &Tensor) -> Tensor {
    mask.nonzero().view([-1])
}

/// `dst[idx] = src` along dim 0, in place.
pub(crate) fn put(dst: &mut Tensor, idx: &Tensor, src: &Tensor) {
    if idx.numel() > 0 {
        let _ = dst.index_copy_(0, idx, src);
    }
}
