use super::*;

#[test]
fn zero_window_or_heads_are_errors_not_a_division_by_zero() {
    // Regression (fuzzing model.json, cases 358 and 2428): `res % w` and `dim % heads` divided by 0.
    let mut c = SwinConfig::micro_patch2_window4_32();
    c.window_size = 0;
    assert!(c.validate().unwrap_err().contains("must be ≥ 1"));
    let mut c = SwinConfig::micro_patch2_window4_32();
    c.num_heads[0] = 0;
    assert!(c.validate().unwrap_err().contains("must be ≥ 1"));
    assert!(SwinConfig::micro_patch2_window4_32().validate().is_ok());
}

#[test]
fn relative_index_matches_hand_computed_2x2() {
    // w=2: tokens (0,0),(0,1),(1,0),(1,1); table side 3
    let idx = relative_position_index(2);
    assert_eq!(&idx[0..4], &[4, 3, 1, 0]);
    assert_eq!(&idx[12..16], &[8, 7, 5, 4]);
    assert_eq!(*idx.iter().max().unwrap(), 8);
}

#[test]
fn shift_mask_has_zero_diagonal_and_minus_100_across_regions() {
    let m = shifted_window_mask(8, 4, 2);
    assert_eq!(m.len(), 4 * 16 * 16);
    // window 0 (top-left) is a single region: all zeros
    assert!(m[..256].iter().all(|v| *v == 0.0));
    // last window (bottom-right) has 4 regions: token 0 and token 15 differ
    let last = &m[3 * 256..];
    assert_eq!(last[15], -100.0);
    assert!((0..16).all(|t| last[t * 16 + t] == 0.0));
}

#[test]
fn window_shrinks_and_shift_disappears_when_stage_fits_one_window() {
    let c = SwinConfig::base_patch4_window7_224();
    assert_eq!(c.window_and_shift(56, true), (7, 3));
    assert_eq!(c.window_and_shift(7, true), (7, 0));
    let m = SwinConfig::micro_patch2_window4_32();
    assert!(m.validate().is_ok());
    assert_eq!(m.window_and_shift(4, true), (4, 0));
    let mut bad = m.clone();
    bad.img_size = 36;
    assert!(bad.validate().unwrap_err().contains("not a multiple of window"));
}

#[test]
fn legacy_keys_move_downsample_and_head() {
    assert_eq!(
        legacy_key("layers.0.downsample.reduction.weight", "head.fc"),
        KeyFate::Param("layers.1.downsample.reduction.weight".into())
    );
    assert_eq!(legacy_key("head.bias", "head.fc"), KeyFate::Head("head.fc.bias".into()));
    assert_eq!(
        legacy_key("layers.2.blocks.3.mlp.fc1.weight", "head.fc"),
        KeyFate::Param("layers.2.blocks.3.mlp.fc1.weight".into())
    );
}
