//! Bring-your-own TorchScript models as feature backbones and as classifiers.

use roli_models::registry::{IMAGENET_MEAN, IMAGENET_STD};
use roli_models::script::{describe, ScriptOutput};
use roli_models::{Classifier, ClassifierOptions, ModelError};
use tch::nn::OptimizerConfig;
use tch::{nn, Device, Tensor};

use crate::common::*;

#[test]
fn torchscript_classifier_matches_pytorch_logits_and_gradients() {
    let Some(dir) = tiny() else { return };
    // normalisation lives inside this module: hand it raw [0,1] pixels
    let desc =
        describe(&dir.join("script_logits.pt"), [3, 32, 32], ScriptOutput::Logits, false, vec![0.0; 3], vec![1.0; 3])
            .unwrap();
    assert_eq!(desc.num_features(), 5);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Classifier::new(&vs.root(), &desc, &ClassifierOptions::new(5)).unwrap();
    assert!(m.head_var_names().is_empty());
    check_parity("torchscript logits", &m, &read_io(&dir.join("script_logits_io.safetensors")));
    // the class count is checked against what the module returns
    let vs2 = nn::VarStore::new(Device::Cpu);
    let e = Classifier::new(&vs2.root(), &desc, &ClassifierOptions::new(10)).unwrap_err().to_string();
    assert!(e.contains("returns 5 logits"), "{e}");
}

#[test]
fn torchscript_features_frozen_and_trainable() {
    let Some(dir) = tiny() else { return };
    let io = read_io(&dir.join("script_logits_io.safetensors"));
    let file = dir.join("script_features.pt");
    let frozen =
        describe(&file, [3, 32, 32], ScriptOutput::Features, false, IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec())
            .unwrap();
    assert_eq!(frozen.num_features(), 64);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Classifier::new(&vs.root(), &frozen, &ClassifierOptions::new(3)).unwrap();
    let f = m.features(&io["x"], false);
    assert!(max_abs(&f, &io["features"]) <= PARITY_TOL);
    assert_eq!(vs.trainable_variables().len(), 2, "frozen: only the head trains");
    assert!(vs.variables().keys().any(|k| k == "m.conv1.weight"), "script parameters keep their dotted names");

    // trainable: an optimiser step through the TorchScript graph changes its weights
    let trainable =
        describe(&file, [3, 32, 32], ScriptOutput::Features, true, IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec())
            .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Classifier::new(&vs.root(), &trainable, &ClassifierOptions::new(3)).unwrap();
    assert!(vs.trainable_variables().len() > 2);
    let w0 = vs.variables()["m.conv1.weight"].copy();
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    let y = Tensor::from_slice(&[0i64, 1]);
    let loss = m.forward_t(&io["x"], true).cross_entropy_for_logits(&y);
    opt.backward_step(&loss);
    assert!(max_abs(&vs.variables()["m.conv1.weight"], &w0) > 0.0);
}

#[test]
fn non_torchscript_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("model.pt");
    std::fs::write(&f, "not a module").unwrap();
    let e = describe(&f, [3, 32, 32], ScriptOutput::Logits, false, vec![0.0; 3], vec![1.0; 3]).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, ModelError::Script { .. }) && s.contains("model.pt") && s.contains("torch.jit"), "{s}");
}
