//! Attack ids, in their own leaf module.
//!
//! Every attack names itself with a [`StageId`] ([`crate::Attack::id`]), and the error type, the
//! checks and the cascade record them. The id used to live in `presets`, which itself builds the
//! attacks, so attacks and presets imported each other; here it depends on nothing in the crate,
//! and `presets` sits above the attacks. `presets::StageId` still works (re-export).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Attack ids, spelled as AutoAttack spells them (plus `pgd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StageId {
    /// Projected gradient descent.
    #[serde(rename = "pgd")]
    Pgd,
    /// APGD on cross-entropy.
    #[serde(rename = "apgd-ce")]
    ApgdCe,
    /// APGD on the DLR loss.
    #[serde(rename = "apgd-dlr")]
    ApgdDlr,
    /// Targeted APGD on the targeted DLR loss, over the top-k classes.
    #[serde(rename = "apgd-t")]
    ApgdT,
    /// Untargeted FAB.
    #[serde(rename = "fab")]
    Fab,
    /// Targeted FAB over the top-k classes.
    #[serde(rename = "fab-t")]
    FabT,
    /// Square Attack (black-box).
    #[serde(rename = "square")]
    Square,
}

impl StageId {
    /// The AutoAttack spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StageId::Pgd => "pgd",
            StageId::ApgdCe => "apgd-ce",
            StageId::ApgdDlr => "apgd-dlr",
            StageId::ApgdT => "apgd-t",
            StageId::Fab => "fab",
            StageId::FabT => "fab-t",
            StageId::Square => "square",
        }
    }

    /// Whether the attack uses gradients (false only for Square).
    pub fn is_white_box(self) -> bool {
        self != StageId::Square
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_ids_serialize_as_autoattack() {
        for (id, s) in [
            (StageId::Pgd, "pgd"),
            (StageId::ApgdCe, "apgd-ce"),
            (StageId::ApgdT, "apgd-t"),
            (StageId::FabT, "fab-t"),
            (StageId::Square, "square"),
            (StageId::ApgdDlr, "apgd-dlr"),
            (StageId::Fab, "fab"),
        ] {
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{s}\""));
            assert_eq!(id.to_string(), s);
        }
    }
}
