//! What a stage is, by name: the stage-1 probe or a stage-2 finetuning method ([`StageKind`],
//! serialized `linear` or the method's name), and how a stage-2 head starts ([`Init`]). Shared by
//! the config (its `finetune.inits`, `eval.aa_methods`), the plan and the results schema.
use crate::peft::Method;
use serde::{Deserialize, Serialize};

/// What a result row trained: the stage-1 linear probe or a stage-2 method. Serialized as
/// `linear` or the method's name (configs' `eval.aa_methods`, `result.json`, `summary.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StageKind {
    Probe,
    Finetune(Method),
}

impl StageKind {
    /// The probe's name in configs and results.
    pub const PROBE_NAME: &'static str = "linear";

    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Probe => Self::PROBE_NAME,
            StageKind::Finetune(m) => m.as_str(),
        }
    }
    /// Full finetuning (the report compares it with the probe: the paper's finding 2).
    pub fn full() -> StageKind {
        StageKind::named(crate::peft::full::NAME).expect("full finetuning is registered")
    }
    pub fn is_probe(self) -> bool {
        self == StageKind::Probe
    }
    /// The finetuning method (`None` for the probe).
    pub fn method(self) -> Option<Method> {
        match self {
            StageKind::Probe => None,
            StageKind::Finetune(m) => Some(m),
        }
    }
    /// `linear` or a registered method.
    pub fn named(name: &str) -> anyhow::Result<StageKind> {
        if name == Self::PROBE_NAME {
            Ok(StageKind::Probe)
        } else {
            Method::named(name).map(StageKind::Finetune).map_err(|_| {
                anyhow::anyhow!(
                    "unknown method '{name}'; use {} or one of {}",
                    Self::PROBE_NAME,
                    crate::peft::names().join(", ")
                )
            })
        }
    }
    /// The probe, then every registered method.
    pub fn all() -> impl Iterator<Item = StageKind> {
        std::iter::once(StageKind::Probe).chain(Method::all().map(StageKind::Finetune))
    }
}

impl std::str::FromStr for StageKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        StageKind::named(s)
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
impl Serialize for StageKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for StageKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StageKind::named(&s).map_err(serde::de::Error::custom)
    }
}

/// How the stage-2 head starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Random linear initialisation (the baseline).
    Ranli,
    /// The stage-1 adversarial linear probe's best head.
    Roli,
}

impl Init {
    pub const ALL: [Init; 2] = [Init::Ranli, Init::Roli];
    pub fn as_str(self) -> &'static str {
        match self {
            Init::Ranli => "ranli",
            Init::Roli => "roli",
        }
    }
}

/// The init column of a result row: `-` for the probe (stage 1 has no init), else `ranli`/`roli`.
pub fn init_label(kind: StageKind, init: Init) -> &'static str {
    if kind.is_probe() {
        "-"
    } else {
        init.as_str()
    }
}

/// `<method>_<init>`: a stage-2 run's folder name and its `finetune.per_method` key.
pub fn run_key(kind: impl Into<StageKind>, init: Init) -> String {
    format!("{}_{}", kind.into().as_str(), init.as_str())
}

impl From<Method> for StageKind {
    fn from(m: Method) -> Self {
        StageKind::Finetune(m)
    }
}
