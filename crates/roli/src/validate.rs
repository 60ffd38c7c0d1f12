//! Checks of user input as pure functions, so each is unit-tested and every command (CLI flags and
//! config keys alike) refuses the same bad values with the same one-line message. Value checks
//! (radii, steps, limits) run before anything big is loaded; [`model_fits_data`] and
//! [`classes_fit`] run once the model's description and the data's shape are known, before the
//! first forward, where a mismatch would otherwise surface as a tensor-shape panic.
use roli_attacks::threat::Norm;

/// A bad input, named with its flag or key and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// NaN or ±inf where a number of pixel units is expected.
    #[error("{key} = {value} is not a finite number; give one in [0,1] pixel units, e.g. 0.031373 (8/255)")]
    NotFinite { key: String, value: f64 },
    /// A negative radius or step.
    #[error("{key} = {value} is negative; radii and steps are ≥ 0 (pixel units, e.g. 0.031373 = 8/255)")]
    Negative { key: String, value: f64 },
    /// A zero step: PGD would never move.
    #[error("{key} = 0 makes PGD stand still; give a step > 0 (e.g. eps/4)")]
    ZeroStep { key: String },
    /// An L∞ radius above 1: every image of [0,1] pixels is within reach, so robust accuracy is
    /// meaningless; usually a radius given in 0–255 units.
    #[error(
        "{key} = {value} exceeds 1, the whole [0,1] pixel range under L∞; give pixel units (8/255 = 0.031373){allow}"
    )]
    LargeLinf { key: String, value: f64, allow: String },
    /// A limit of 0 leaves nothing to train or evaluate.
    #[error("{key} 0 leaves no examples; give a positive number or drop it to use the whole split")]
    ZeroLimit { key: String },
    /// A count that must be at least 1 (batch size, restarts).
    #[error("{key} must be ≥ 1, got 0")]
    ZeroCount { key: String },
    /// An attack that needs a radius, without one.
    #[error("--attack {attack} needs --eps (e.g. --eps 0.3 for MNIST, 0.031373 for CIFAR) or --eps-list; only --attack none runs without")]
    EpsRequired { attack: String },
    /// The model reads another number of colour channels than the data has.
    #[error("model '{model}' takes {model_c}-channel images but {data} has {data_c}-channel images; use a model trained on {data_c}-channel data")]
    Channels { model: String, model_c: i64, data: String, data_c: i64 },
    /// The model reads another image size, and resizing is off.
    #[error("model '{model}' takes {mh}×{mw} images but {data} has {dh}×{dw} images; resize inside the model (config: model.resize = [{mh}, {mw}])")]
    Size { model: String, mh: i64, mw: i64, data: String, dh: i64, dw: i64 },
    /// `model.resize = [H, W]` names another size than the backbone's own: the model resizes to
    /// its own size, so the value would be silently replaced.
    #[error("model.resize = [{rh}, {rw}] but backbone '{model}' takes {h}x{w} images; set model.resize = [{h}, {w}] (roli resizes to the backbone's own size and does not interpolate position embeddings)")]
    ResizeTarget { model: String, rh: i64, rw: i64, h: i64, w: i64 },
    /// The model's head predicts another number of classes than the data has.
    #[error("model '{model}' predicts {model_k} classes but {data} has {data_k} classes; evaluate on data with the model's classes, or train a head for these with roli run")]
    Classes { model: String, model_k: i64, data: String, data_k: i64 },
}

/// A radius (`--eps`, `threat.eps`): finite, ≥ 0, and under L∞ at most 1 unless `allow_large`.
/// `allow_flag` names the switch that permits more (empty: none, as in configs).
pub fn radius(key: &str, value: f64, norm: Norm, allow_large: bool, allow_flag: &str) -> Result<(), InputError> {
    let key = key.to_string();
    if !value.is_finite() {
        return Err(InputError::NotFinite { key, value });
    }
    if value < 0.0 {
        return Err(InputError::Negative { key, value });
    }
    if norm == Norm::Linf && value > 1.0 && !allow_large {
        let allow = if allow_flag.is_empty() { String::new() } else { format!(", or pass {allow_flag}") };
        return Err(InputError::LargeLinf { key, value, allow });
    }
    Ok(())
}

/// A PGD step size: finite and > 0.
pub fn step_size(key: &str, value: f64) -> Result<(), InputError> {
    let key = key.to_string();
    if !value.is_finite() {
        return Err(InputError::NotFinite { key, value });
    }
    if value < 0.0 {
        return Err(InputError::Negative { key, value });
    }
    if value == 0.0 {
        return Err(InputError::ZeroStep { key });
    }
    Ok(())
}

/// A count that must be ≥ 1.
pub fn at_least_one(key: &str, value: usize) -> Result<(), InputError> {
    if value == 0 {
        return Err(InputError::ZeroCount { key: key.to_string() });
    }
    Ok(())
}

/// A limit before the split's size is known: `Some(0)` is an error.
pub fn limit(key: &str, value: Option<usize>) -> Result<(), InputError> {
    if value == Some(0) {
        return Err(InputError::ZeroLimit { key: key.to_string() });
    }
    Ok(())
}

/// How many examples a limit leaves of a split of `len`, and the warning to print when the limit
/// asks for more than there are (it is clamped: asking for "up to N" is not wrong).
pub fn clamp_limit(key: &str, value: Option<usize>, len: usize, split: &str) -> (usize, Option<String>) {
    match value {
        Some(n) if n > len => {
            (len, Some(format!("{key} {n} is larger than {split} ({len} examples); using all {len}")))
        }
        Some(n) => (n, None),
        None => (len, None),
    }
}

/// Whether a model reading `expects` (`[C, H, W]`) can take the data's `[C, H, W]` images;
/// `resizes`: the model resizes inputs of another size itself.
pub fn model_fits_data(
    model: &str,
    expects: [i64; 3],
    resizes: bool,
    data: &str,
    has: [i64; 3],
) -> Result<(), InputError> {
    let (model, data) = (model.to_string(), data.to_string());
    if expects[0] != has[0] {
        return Err(InputError::Channels { model, model_c: expects[0], data, data_c: has[0] });
    }
    if !resizes && (expects[1], expects[2]) != (has[1], has[2]) {
        return Err(InputError::Size { model, mh: expects[1], mw: expects[2], data, dh: has[1], dw: has[2] });
    }
    Ok(())
}

/// Whether `model.resize = [H, W]` (if given) names the size of a model reading `expects`
/// (`[C, H, W]`).
pub fn resize_target(model: &str, expects: [i64; 3], resize_to: Option<[i64; 2]>) -> Result<(), InputError> {
    let [_, h, w] = expects;
    match resize_to {
        Some([rh, rw]) if [rh, rw] != [h, w] => Err(InputError::ResizeTarget { model: model.into(), rh, rw, h, w }),
        _ => Ok(()),
    }
}

/// Whether a model's own head (`model_k` outputs) fits data of `data_k` classes.
pub fn classes_fit(model: &str, model_k: i64, data: &str, data_k: i64) -> Result<(), InputError> {
    if model_k != data_k {
        return Err(InputError::Classes { model: model.into(), model_k, data: data.into(), data_k });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_line(e: InputError) -> String {
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        s
    }

    #[test]
    fn radii_must_be_finite_non_negative_and_small_under_linf() {
        assert!(radius("--eps", 0.3, Norm::Linf, false, "--allow-large-eps").is_ok());
        assert!(radius("--eps", 0.0, Norm::Linf, false, "").is_ok());
        assert!(radius("--eps", 1.0, Norm::Linf, false, "").is_ok());
        let e = one_line(radius("--eps", f64::NAN, Norm::Linf, false, "").unwrap_err());
        assert!(e.starts_with("--eps = NaN is not a finite number"), "{e}");
        let e = one_line(radius("threat.eps", f64::INFINITY, Norm::L2, false, "").unwrap_err());
        assert!(e.starts_with("threat.eps = inf is not a finite"), "{e}");
        let e = one_line(radius("--eps", -0.1, Norm::L2, false, "").unwrap_err());
        assert!(e.contains("--eps = -0.1 is negative"), "{e}");
        let e = one_line(radius("--eps", 8.0, Norm::Linf, false, "--allow-large-eps").unwrap_err());
        assert!(e.contains("--eps = 8 exceeds 1") && e.ends_with("or pass --allow-large-eps"), "{e}");
        let e = one_line(radius("threat.eps", 8.0, Norm::Linf, false, "").unwrap_err());
        assert!(e.ends_with("(8/255 = 0.031373)"), "{e}");
        assert!(radius("--eps", 8.0, Norm::Linf, true, "--allow-large-eps").is_ok());
        assert!(radius("--eps", 2.0, Norm::L2, false, "").is_ok(), "L2 radii above 1 are common");
    }

    #[test]
    fn steps_must_be_positive_and_finite() {
        assert!(step_size("--step-size", 0.01).is_ok());
        assert!(one_line(step_size("--step-size", 0.0).unwrap_err()).contains("stand still"));
        assert!(one_line(step_size("--step-size", -1.0).unwrap_err()).contains("negative"));
        assert!(one_line(step_size("threat.step_size", f64::NAN).unwrap_err()).contains("threat.step_size = NaN"));
        assert!(one_line(at_least_one("--batch-size", 0).unwrap_err()).contains("--batch-size must be ≥ 1"));
        assert!(at_least_one("--restarts", 1).is_ok());
    }

    #[test]
    fn limits_refuse_zero_and_clamp_with_a_warning() {
        assert!(limit("--limit", None).is_ok() && limit("--limit", Some(3)).is_ok());
        assert!(one_line(limit("data.test_limit", Some(0)).unwrap_err()).starts_with("data.test_limit 0 leaves no"));
        assert_eq!(clamp_limit("--limit", Some(5), 20, "test"), (5, None));
        assert_eq!(clamp_limit("--limit", None, 20, "test"), (20, None));
        let (n, w) = clamp_limit("--limit", Some(500), 20, "mnist test");
        assert_eq!(n, 20);
        assert_eq!(w.unwrap(), "--limit 500 is larger than mnist test (20 examples); using all 20");
    }

    #[test]
    fn model_and_data_must_agree_on_channels_size_and_classes() {
        assert!(model_fits_data("m", [1, 28, 28], false, "d", [1, 28, 28]).is_ok());
        assert!(model_fits_data("m", [1, 28, 28], true, "d", [1, 32, 32]).is_ok());
        let e = one_line(model_fits_data("lenet", [1, 28, 28], true, "cifar", [3, 32, 32]).unwrap_err());
        assert_eq!(
            e,
            "model 'lenet' takes 1-channel images but cifar has 3-channel images; use a model trained on 3-channel data"
        );
        let e = one_line(model_fits_data("vit", [1, 28, 28], false, "d", [1, 32, 32]).unwrap_err());
        assert!(e.contains("28×28") && e.contains("32×32") && e.contains("model.resize = [28, 28]"), "{e}");
        assert!(resize_target("vit", [1, 28, 28], None).is_ok());
        assert!(resize_target("vit", [1, 28, 28], Some([28, 28])).is_ok());
        let e = one_line(resize_target("vit", [1, 28, 28], Some([224, 224])).unwrap_err());
        assert!(e.contains("model.resize = [224, 224]") && e.contains("set model.resize = [28, 28]"), "{e}");
        assert!(classes_fit("m", 10, "d", 10).is_ok());
        let e = one_line(classes_fit("m", 10, "d", 3).unwrap_err());
        assert!(e.contains("predicts 10 classes but d has 3 classes"), "{e}");
        assert!(one_line(InputError::EpsRequired { attack: "pgd".into() }).contains("--attack none"));
    }
}
