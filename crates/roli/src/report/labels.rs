//! Placing figure labels so that they do not overlap: each label tries a ring of positions around
//! its point (right, above, left, below, the diagonals, then twice as far) and takes the first
//! that stays inside the plot and clear of every label already placed and every obstacle (markers,
//! the legend); when none is clear, the one overlapping least. Greedy, in the given order, so the
//! caller lists the labels that matter most first. Pure pixel geometry, tested on its own.

/// A rectangle in pixels, `x0 <= x1`, `y0 <= y1` (y grows downwards, as in the backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl Rect {
    /// The square of half-width `r` around `(x, y)` (a marker).
    pub fn around((x, y): (i32, i32), r: i32) -> Self {
        Rect { x0: x - r, y0: y - r, x1: x + r, y1: y + r }
    }

    /// The area shared with `o` (0 when apart or only touching).
    pub fn overlap(&self, o: &Rect) -> i64 {
        let w = (self.x1.min(o.x1) - self.x0.max(o.x0)).max(0) as i64;
        let h = (self.y1.min(o.y1) - self.y0.max(o.y0)).max(0) as i64;
        w * h
    }

    fn inside(&self, b: &Rect) -> bool {
        self.x0 >= b.x0 && self.y0 >= b.y0 && self.x1 <= b.x1 && self.y1 <= b.y1
    }
}

/// Gap between a point and its label, in pixels.
const GAP: i32 = 7;

/// The candidate boxes of a `w`×`h` label for the point `(x, y)`, in order of preference.
fn candidates((x, y): (i32, i32), (w, h): (i32, i32)) -> Vec<Rect> {
    let mut out = Vec::new();
    for k in [1, 2, 4] {
        let g = GAP * k;
        let at = |x0: i32, y0: i32| Rect { x0, y0, x1: x0 + w, y1: y0 + h };
        out.extend([
            at(x + g, y - h / 2),     // right
            at(x + g, y - h - g / 2), // upper right
            at(x - w / 2, y - h - g), // above
            at(x - w - g, y - h - g / 2),
            at(x - w - g, y - h / 2), // left
            at(x - w - g, y + g / 2),
            at(x - w / 2, y + g), // below
            at(x + g, y + g / 2), // lower right
        ]);
    }
    out
}

/// Boxes for labels of `sizes` at `anchors` (same length), inside `bounds`, avoiding
/// `obstacles` and each other where possible.
pub fn place(anchors: &[(i32, i32)], sizes: &[(i32, i32)], obstacles: &[Rect], bounds: Rect) -> Vec<Rect> {
    let mut placed: Vec<Rect> = Vec::with_capacity(anchors.len());
    for (&a, &s) in anchors.iter().zip(sizes) {
        let cost = |r: &Rect| -> i64 {
            let clash: i64 = placed.iter().chain(obstacles).map(|o| r.overlap(o)).sum();
            // Leaving the plot is worse than any overlap.
            clash + if r.inside(&bounds) { 0 } else { 1 << 40 }
        };
        let all = candidates(a, s);
        let best = all.iter().find(|r| cost(r) == 0).or_else(|| all.iter().min_by_key(|r| cost(r)));
        placed.push(*best.expect("candidates() is never empty"));
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Rect = Rect { x0: 0, y0: 0, x1: 400, y1: 300 };

    #[test]
    fn a_lone_label_goes_right_of_its_point() {
        let r = place(&[(100, 100)], &[(40, 12)], &[], BOUNDS);
        assert_eq!(r, vec![Rect { x0: 107, y0: 94, x1: 147, y1: 106 }]);
    }

    #[test]
    fn a_crowd_of_points_gets_labels_that_do_not_overlap() {
        // Eight points within 12 px, as the demo's PEFT runs cluster: every label finds free room.
        let anchors: Vec<(i32, i32)> = (0..8).map(|i| (200 + (i % 3) * 6, 150 + (i / 3) * 5)).collect();
        let sizes = vec![(52, 13); 8];
        let markers: Vec<Rect> = anchors.iter().map(|&a| Rect::around(a, 6)).collect();
        let r = place(&anchors, &sizes, &markers, BOUNDS);
        for i in 0..r.len() {
            assert!(r[i].inside(&BOUNDS));
            for m in &markers {
                assert_eq!(r[i].overlap(m), 0, "label {i} covers a marker");
            }
            for j in 0..i {
                assert_eq!(r[i].overlap(&r[j]), 0, "labels {i} and {j} overlap: {:?} {:?}", r[i], r[j]);
            }
        }
    }

    #[test]
    fn a_label_at_the_edge_stays_inside() {
        let r = place(&[(395, 5)], &[(60, 12)], &[], BOUNDS)[0];
        assert!(r.inside(&BOUNDS), "{r:?}");
    }

    #[test]
    fn overlap_is_an_area() {
        let a = Rect { x0: 0, y0: 0, x1: 10, y1: 10 };
        assert_eq!(a.overlap(&Rect { x0: 5, y0: 5, x1: 20, y1: 20 }), 25);
        assert_eq!(a.overlap(&Rect { x0: 10, y0: 0, x1: 20, y1: 10 }), 0);
    }
}
