//! The attacks `roli eval --attack` accepts, as one table.
//!
//! [`ATTACKS`] lists each name with a one-line description and the [`AttackSpec`] it stands for.
//! Parsing ([`AttackSpec::from_str`]), printing ([`AttackSpec`]'s `Display`), the name list
//! [`ATTACK_NAMES`], the help text [`attack_help`] and the "unknown attack" error's list of valid
//! names are all derived from it, so a new attack name is one table row.

use crate::pgd::{PgdConfig, StepSize};
use crate::presets::{self, AaVersion, Stage};
use crate::threat::Norm;
use crate::AttackError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The attack named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackSpec {
    /// Clean accuracy only.
    None,
    /// One attack with its official (or given PGD) settings.
    Single(Stage),
    /// An AutoAttack version.
    AutoAttack(AaVersion),
}

/// One row of [`ATTACKS`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NamedAttack {
    /// The command-line name (also what [`AttackSpec`] prints and `results.json` records).
    pub name: &'static str,
    /// One line for the help text.
    pub help: &'static str,
    /// What the name parses to.
    pub spec: AttackSpec,
}

/// Every attack name, in help order. Single attacks get AutoAttack's values: APGD-CE/DLR 1 restart
/// (standard), APGD-T and FAB-T 9 targets, FAB 5 restarts (plus), Square 5000 queries; `pgd` gets
/// [`PgdConfig::default`] (override with [`AttackSpec::with_pgd`]).
pub const ATTACKS: &[NamedAttack] = &[
    NamedAttack { name: "none", help: "clean accuracy only", spec: AttackSpec::None },
    NamedAttack {
        name: "pgd",
        help: "PGD, 10 steps of eps/4 from a random start (RoLI's evaluation PGD)",
        spec: AttackSpec::Single(Stage::Pgd(PgdConfig::ROLI_EVAL)),
    },
    NamedAttack {
        name: "apgd-ce",
        help: "APGD on cross-entropy, 100 iterations, 1 restart",
        spec: AttackSpec::Single(presets::AA_STANDARD[0]),
    },
    NamedAttack {
        name: "apgd-dlr",
        help: "APGD on the DLR loss, 100 iterations, 1 restart",
        spec: AttackSpec::Single(Stage::ApgdDlr { restarts: 1, eot_iter: 1 }),
    },
    NamedAttack {
        name: "apgd-t",
        help: "targeted APGD (DLR) against the 9 highest-ranked wrong classes",
        spec: AttackSpec::Single(presets::AA_STANDARD[1]),
    },
    NamedAttack {
        name: "fab",
        help: "untargeted FAB, minimum-norm, 5 restarts (linf, l2)",
        spec: AttackSpec::Single(presets::AA_PLUS[2]),
    },
    NamedAttack {
        name: "fab-t",
        help: "targeted FAB against the 9 highest-ranked wrong classes (linf, l2)",
        spec: AttackSpec::Single(presets::AA_STANDARD[2]),
    },
    NamedAttack {
        name: "square",
        help: "Square Attack, black-box, 5000 queries (linf, l2)",
        spec: AttackSpec::Single(presets::AA_STANDARD[3]),
    },
    NamedAttack {
        name: "aa-standard",
        help: "AutoAttack standard: apgd-ce, apgd-t, fab-t, square (linf, l2)",
        spec: AttackSpec::AutoAttack(AaVersion::Standard),
    },
    NamedAttack {
        name: "aa-plus",
        help: "AutoAttack plus: standard and 5-restart apgd-ce, apgd-dlr, fab; about 5x slower (linf, l2)",
        spec: AttackSpec::AutoAttack(AaVersion::Plus),
    },
    NamedAttack {
        name: "aa-rand",
        help: "AutoAttack rand: apgd-ce and apgd-dlr with 20-sample EoT, for randomised models (linf, l2)",
        spec: AttackSpec::AutoAttack(AaVersion::Rand),
    },
];

/// Extra spellings [`AttackSpec::from_str`] accepts, as `(alias, name)`; not listed in the help.
const ALIASES: &[(&str, &str)] = &[("clean", "none")];

/// Names accepted by [`AttackSpec::from_str`], in help order: the `name` column of [`ATTACKS`].
pub const ATTACK_NAMES: &[&str] = &names();

const fn names() -> [&'static str; ATTACKS.len()] {
    let mut out = [""; ATTACKS.len()];
    let mut i = 0;
    while i < ATTACKS.len() {
        out[i] = ATTACKS[i].name;
        i += 1;
    }
    out
}

/// One line per attack, `name  description`, aligned (for `--help` and error messages).
pub fn attack_help() -> String {
    let w = ATTACKS.iter().map(|a| a.name.len()).max().unwrap_or(0);
    ATTACKS.iter().map(|a| format!("{:w$}  {}", a.name, a.help)).collect::<Vec<_>>().join("\n")
}

impl FromStr for AttackSpec {
    type Err = AttackError;
    /// Looks `s` up in [`ATTACKS`] (and its aliases).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = ALIASES.iter().find(|(alias, _)| *alias == s).map_or(s, |&(_, name)| name);
        ATTACKS.iter().find(|a| a.name == name).map(|a| a.spec).ok_or_else(|| AttackError::UnknownAttack {
            name: s.to_string(),
            known: ATTACKS.iter().map(|a| a.name).collect::<Vec<_>>().join(", "),
        })
    }
}

impl fmt::Display for AttackSpec {
    /// The name of the table row of the same attack; budgets (e.g. from [`AttackSpec::with_pgd`])
    /// do not change the name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ATTACKS.iter().find(|a| a.spec.same_attack(self)) {
            Some(a) => f.write_str(a.name),
            // Unreachable while every stage id and version has a row (tested); the id is the name then.
            None => match self {
                AttackSpec::Single(s) => f.write_str(s.id().as_str()),
                other => write!(f, "{other:?}"),
            },
        }
    }
}

impl AttackSpec {
    /// PGD with explicit steps, absolute step size (None keeps eps/4) and restarts.
    pub fn with_pgd(steps: usize, step_size: Option<f64>, restarts: usize) -> Self {
        let d = PgdConfig::default();
        AttackSpec::Single(Stage::Pgd(PgdConfig {
            steps,
            step_size: step_size.map(StepSize::Absolute).unwrap_or(d.step_size),
            restarts,
            ..d
        }))
    }

    /// The resolved stage list for a norm (written into the report; print it for a dry run).
    pub fn stages(&self, norm: Norm) -> Result<Vec<Stage>, AttackError> {
        Ok(match self {
            AttackSpec::None => Vec::new(),
            AttackSpec::Single(s) => vec![*s],
            AttackSpec::AutoAttack(v) => presets::aa(*v, norm)?.to_vec(),
        })
    }

    /// Same variant and same stage id or version, whatever the budgets.
    fn same_attack(&self, other: &AttackSpec) -> bool {
        match (self, other) {
            (AttackSpec::None, AttackSpec::None) => true,
            (AttackSpec::Single(a), AttackSpec::Single(b)) => a.id() == b.id(),
            (AttackSpec::AutoAttack(a), AttackSpec::AutoAttack(b)) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StageId;

    #[test]
    fn every_table_name_parses_and_round_trips() {
        assert_eq!(ATTACK_NAMES.len(), ATTACKS.len());
        for (a, name) in ATTACKS.iter().zip(ATTACK_NAMES) {
            assert_eq!(a.name, *name);
            let spec: AttackSpec = name.parse().unwrap();
            assert_eq!(spec, a.spec);
            assert_eq!(&spec.to_string(), name);
            assert!(!a.help.is_empty() && !a.help.contains('\n'), "{name}: help must be one line");
            assert!(attack_help().lines().any(|l| l.starts_with(name) && l.ends_with(a.help)));
        }
        assert_eq!("clean".parse::<AttackSpec>().unwrap(), AttackSpec::None);
        // A PGD with its own budget still prints as `pgd`.
        assert_eq!(AttackSpec::with_pgd(40, Some(0.01), 2).to_string(), "pgd");
    }

    /// The names and their specs are part of the CLI and of `results.json`: they must not change.
    #[test]
    fn names_and_specs_are_unchanged() {
        assert_eq!(
            ATTACK_NAMES,
            [
                "none",
                "pgd",
                "apgd-ce",
                "apgd-dlr",
                "apgd-t",
                "fab",
                "fab-t",
                "square",
                "aa-standard",
                "aa-plus",
                "aa-rand"
            ]
        );
        let single = |s: &str| match s.parse::<AttackSpec>().unwrap() {
            AttackSpec::Single(st) => st,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(single("pgd"), Stage::Pgd(PgdConfig::default()));
        assert_eq!(single("apgd-ce"), Stage::ApgdCe { restarts: 1, eot_iter: 1 });
        assert_eq!(single("apgd-dlr"), Stage::ApgdDlr { restarts: 1, eot_iter: 1 });
        assert_eq!(single("apgd-t"), Stage::ApgdT { restarts: 1, targets: 9 });
        assert_eq!(single("fab"), Stage::Fab { restarts: 5 });
        assert_eq!(single("fab-t"), Stage::FabT { restarts: 1, targets: 9 });
        assert_eq!(single("square"), Stage::Square { queries: 5000, p_init: 0.8 });
        // Every stage id and every AutoAttack version has a row, so Display never falls back.
        let ids: Vec<StageId> = ATTACKS
            .iter()
            .filter_map(|a| match a.spec {
                AttackSpec::Single(s) => Some(s.id()),
                _ => None,
            })
            .collect();
        for id in [
            StageId::Pgd,
            StageId::ApgdCe,
            StageId::ApgdDlr,
            StageId::ApgdT,
            StageId::Fab,
            StageId::FabT,
            StageId::Square,
        ] {
            assert_eq!(ids.iter().filter(|&&i| i == id).count(), 1, "{id}");
        }
        for v in [AaVersion::Standard, AaVersion::Plus, AaVersion::Rand] {
            assert_eq!(ATTACKS.iter().filter(|a| a.spec == AttackSpec::AutoAttack(v)).count(), 1, "{v:?}");
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_valid_names() {
        let e = "pgd-9".parse::<AttackSpec>().unwrap_err();
        assert!(matches!(e, AttackError::UnknownAttack { ref name, .. } if name == "pgd-9"));
        assert_eq!(e.to_string(), format!("unknown attack `pgd-9`; expected one of: {}", ATTACK_NAMES.join(", ")));
        assert!("".parse::<AttackSpec>().is_err());
        assert!("APGD-CE".parse::<AttackSpec>().is_err(), "names are case-sensitive, as before");
    }
}
