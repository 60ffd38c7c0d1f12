use super::*;

#[test]
fn an_unfinished_stage_is_none_and_a_corrupt_result_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    assert!(reuse(d.path()).unwrap().is_none());
    std::fs::write(d.path().join(artifacts::RESULT), "{\"method\": ").unwrap();
    let e = format!("{:#}", reuse(d.path()).unwrap_err());
    assert!(e.contains("result.json cannot be read; delete it"), "{e}");
}

#[test]
fn a_resize_other_than_the_backbones_size_is_refused() {
    let desc = roli_models::descriptor("vit_nano_patch7_28").unwrap();
    assert!(check_resize(None, &desc).is_ok());
    assert!(check_resize(Some([28, 28]), &desc).is_ok());
    let e = check_resize(Some([224, 224]), &desc).unwrap_err().to_string();
    assert!(e.contains("model.resize = [224, 224]") && e.contains("set model.resize = [28, 28]"), "{e}");
}
