//! AutoAttack versions as data: which attacks run, in which order, with which budgets.
//!
//! The tables mirror `AutoAttack._set_version` of the official code (fra31/auto-attack, packaged as
//! `pyautoattack` 0.2.0) for L∞ and L2. Parameters not listed in a [`Stage`] are the attack's official
//! defaults ([`ApgdConfig::OFFICIAL_CE`], [`FabConfig::OFFICIAL_T`], [`SquareConfig::OFFICIAL`]).
//! The L1 versions are not provided, because L1 FAB and L1 Square are not implemented (L1 APGD is:
//! single APGD stages in L1 use AutoAttack's large-eps schedule).

use crate::apgd::{Apgd, ApgdConfig, ApgdLoss};
use crate::attack::Attack;
use crate::fab::{Fab, FabConfig};
use crate::pgd::{Pgd, PgdConfig};
use crate::square::{Square, SquareConfig};
use crate::threat::{Norm, ThreatModel};
use crate::AttackError;
use serde::{Deserialize, Serialize};

/// Re-exported from [`crate::stage_id`], where it moved so that attacks need not import presets.
pub use crate::stage_id::StageId;

/// One stage of a cascade: an attack with its budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "attack", rename_all = "kebab-case")]
pub enum Stage {
    /// PGD with its own settings.
    Pgd(PgdConfig),
    /// APGD-CE.
    ApgdCe {
        /// Restarts.
        restarts: usize,
        /// EoT gradient samples per step.
        eot_iter: usize,
    },
    /// APGD-DLR.
    ApgdDlr {
        /// Restarts.
        restarts: usize,
        /// EoT gradient samples per step.
        eot_iter: usize,
    },
    /// APGD-T.
    ApgdT {
        /// Restarts per target class.
        restarts: usize,
        /// Target classes.
        targets: usize,
    },
    /// Untargeted FAB.
    Fab {
        /// Restarts.
        restarts: usize,
    },
    /// FAB-T.
    FabT {
        /// Restarts per target class.
        restarts: usize,
        /// Target classes.
        targets: usize,
    },
    /// Square.
    Square {
        /// Query budget.
        queries: usize,
        /// Initial fraction of changed pixels.
        p_init: f64,
    },
}

impl Stage {
    /// The stage's id.
    pub fn id(&self) -> StageId {
        match self {
            Stage::Pgd(_) => StageId::Pgd,
            Stage::ApgdCe { .. } => StageId::ApgdCe,
            Stage::ApgdDlr { .. } => StageId::ApgdDlr,
            Stage::ApgdT { .. } => StageId::ApgdT,
            Stage::Fab { .. } => StageId::Fab,
            Stage::FabT { .. } => StageId::FabT,
            Stage::Square { .. } => StageId::Square,
        }
    }

    /// The attack object for this stage in `threat`, all other parameters at their official values.
    pub fn build(&self, threat: ThreatModel) -> Result<Box<dyn Attack>, AttackError> {
        let l1 = threat.norm() == Norm::L1;
        if l1 && matches!(self, Stage::Fab { .. } | Stage::FabT { .. } | Stage::Square { .. }) {
            return Err(AttackError::UnsupportedNorm { attack: self.id(), norm: threat.norm() });
        }
        // L1 APGD uses AutoAttack's large-eps schedule, as its L1 standard version does.
        let base = ApgdConfig { large_reps: l1, ..ApgdConfig::OFFICIAL_CE };
        Ok(match *self {
            Stage::Pgd(cfg) => Box::new(Pgd::new(threat, cfg)),
            Stage::ApgdCe { restarts, eot_iter } => {
                Box::new(Apgd::new(threat, ApgdConfig { restarts, eot_iter, ..base }))
            }
            Stage::ApgdDlr { restarts, eot_iter } => {
                Box::new(Apgd::new(threat, ApgdConfig { restarts, eot_iter, loss: ApgdLoss::Dlr, ..base }))
            }
            Stage::ApgdT { restarts, targets } => {
                Box::new(Apgd::new(threat, ApgdConfig { restarts, loss: ApgdLoss::TargetedDlr { targets }, ..base }))
            }
            Stage::Fab { restarts } => {
                Box::new(Fab::new(threat, FabConfig { restarts, targets: None, ..FabConfig::OFFICIAL_T }))
            }
            Stage::FabT { restarts, targets } => {
                Box::new(Fab::new(threat, FabConfig { restarts, targets: Some(targets), ..FabConfig::OFFICIAL_T }))
            }
            Stage::Square { queries, p_init } => {
                Box::new(Square::new(threat, SquareConfig { n_queries: queries, p_init, ..SquareConfig::OFFICIAL }))
            }
        })
    }
}

/// AutoAttack versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AaVersion {
    /// APGD-CE, APGD-T, FAB-T, Square: the leaderboard protocol.
    Standard,
    /// Standard plus 5-restart untargeted APGD-DLR and FAB: stronger, ~5x slower.
    Plus,
    /// APGD-CE and APGD-DLR with 20-sample EoT, for randomised defences.
    Rand,
}

/// `standard` for L∞ and L2 (`_set_version('standard')`).
pub const AA_STANDARD: &[Stage] = &[
    Stage::ApgdCe { restarts: 1, eot_iter: 1 },
    Stage::ApgdT { restarts: 1, targets: 9 },
    Stage::FabT { restarts: 1, targets: 9 },
    Stage::Square { queries: 5000, p_init: 0.8 },
];

/// `plus` for L∞ and L2 (`_set_version('plus')`): note the official order.
pub const AA_PLUS: &[Stage] = &[
    Stage::ApgdCe { restarts: 5, eot_iter: 1 },
    Stage::ApgdDlr { restarts: 5, eot_iter: 1 },
    Stage::Fab { restarts: 5 },
    Stage::Square { queries: 5000, p_init: 0.8 },
    Stage::ApgdT { restarts: 1, targets: 9 },
    Stage::FabT { restarts: 1, targets: 9 },
];

/// `rand` for L∞ and L2 (`_set_version('rand')`).
pub const AA_RAND: &[Stage] =
    &[Stage::ApgdCe { restarts: 1, eot_iter: 20 }, Stage::ApgdDlr { restarts: 1, eot_iter: 20 }];

/// The stage table of an AutoAttack version for a norm.
pub fn aa(version: AaVersion, norm: Norm) -> Result<&'static [Stage], AttackError> {
    if norm == Norm::L1 {
        return Err(AttackError::UnsupportedNorm { attack: StageId::ApgdCe, norm });
    }
    Ok(match version {
        AaVersion::Standard => AA_STANDARD,
        AaVersion::Plus => AA_PLUS,
        AaVersion::Rand => AA_RAND,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails if anyone changes a preset: these are AutoAttack's `_set_version` values.
    #[test]
    fn presets_equal_official_autoattack() {
        let ids = |s: &[Stage]| s.iter().map(|st| st.id().as_str()).collect::<Vec<_>>();
        assert_eq!(ids(AA_STANDARD), ["apgd-ce", "apgd-t", "fab-t", "square"]);
        assert_eq!(ids(AA_PLUS), ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]);
        assert_eq!(ids(AA_RAND), ["apgd-ce", "apgd-dlr"]);
        assert_eq!(
            AA_STANDARD,
            &[
                Stage::ApgdCe { restarts: 1, eot_iter: 1 },
                Stage::ApgdT { restarts: 1, targets: 9 },
                Stage::FabT { restarts: 1, targets: 9 },
                Stage::Square { queries: 5000, p_init: 0.8 },
            ]
        );
        assert_eq!(AA_PLUS[0], Stage::ApgdCe { restarts: 5, eot_iter: 1 });
        assert_eq!(AA_PLUS[1], Stage::ApgdDlr { restarts: 5, eot_iter: 1 });
        assert_eq!(AA_PLUS[2], Stage::Fab { restarts: 5 });
        assert_eq!(AA_PLUS[4], Stage::ApgdT { restarts: 1, targets: 9 });
        assert_eq!(AA_PLUS[5], Stage::FabT { restarts: 1, targets: 9 });
        assert_eq!(
            AA_RAND,
            &[Stage::ApgdCe { restarts: 1, eot_iter: 20 }, Stage::ApgdDlr { restarts: 1, eot_iter: 20 }]
        );
        // The attack-level defaults every stage inherits.
        let a = ApgdConfig::OFFICIAL_CE;
        assert_eq!((a.n_iter, a.rho, a.momentum), (100, 0.75, 0.75));
        let f = FabConfig::OFFICIAL_T;
        assert_eq!((f.n_iter, f.alpha_max, f.eta, f.beta), (100, 0.1, 1.05, 0.9));
        let s = SquareConfig::OFFICIAL;
        assert_eq!((s.n_queries, s.p_init, s.restarts, s.rescale_schedule), (5000, 0.8, 1, false));
    }

    #[test]
    fn l1_presets_are_refused() {
        assert!(aa(AaVersion::Standard, Norm::L1).is_err());
        assert!(Stage::FabT { restarts: 1, targets: 9 }.build(ThreatModel::L1 { eps: 1.0 }).is_err());
        assert!(Stage::Square { queries: 10, p_init: 0.8 }.build(ThreatModel::L1 { eps: 1.0 }).is_err());
        assert!(Stage::ApgdCe { restarts: 1, eot_iter: 1 }.build(ThreatModel::L1 { eps: 1.0 }).is_ok());
    }
}
