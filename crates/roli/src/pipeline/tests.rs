use super::*;

#[test]
fn an_unfinished_stage_is_none_and_a_corrupt_result_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    assert!(reuse(d.path()).unwrap().is_none());
    std::fs::write(d.path().join(artifacts::RESULT), "{\"method\": ").unwrap();
    let e = format!("{:#}", reuse(d.path()).unwrap_err());
    assert!(e.contains("result.json cannot be read; delete it"), "{e}");
}
