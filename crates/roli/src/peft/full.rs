//! Full finetuning: every tensor trains, and the backbone runs in train mode (dropout, drop path).
use super::PeftMethod;

/// The name of full finetuning (the report compares it with the probe: finding 2).
pub const NAME: &str = "full";

pub struct Full;

impl PeftMethod for Full {
    fn name(&self) -> &'static str {
        NAME
    }
    fn stream(&self) -> u64 {
        1
    }
    fn describe(&self) -> &'static str {
        "every tensor trains; backbone in train mode (drop path)"
    }
    fn trains(&self, _name: &str) -> bool {
        true
    }
    fn backbone_train(&self) -> bool {
        true
    }
}
