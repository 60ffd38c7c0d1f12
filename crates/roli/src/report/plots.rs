//! The report's figures, each written as PNG and SVG with plotters: the paper's Figure 1
//! (clean vs PGD accuracy, one marker per method and initialisation) and robust accuracy vs eps.
//!
//! Text needs a font. plotters' `ttf` feature links fontconfig/freetype at build time, so roli
//! uses the pure-Rust `ab_glyph` feature and looks for a TrueType font at run time: `$ROLI_FONT`,
//! then the usual system locations (DejaVu, Liberation, Noto, …). With none found the figures are
//! drawn without any text (markers, lines and grid only) and the report says so. The font is
//! registered under a private family name, never plotters' default `sans-serif`, so a text call
//! that slipped through in no-text mode fails loudly in the tests instead of using a font by luck.
use super::compare::{Estimate, Row};
use super::labels::Rect;
use super::records::Source;
use crate::config::{Init, StageKind};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Family name the report's font is registered under.
const FAMILY: &str = "roli-report";
/// Pixel size of every figure (PNG) and its SVG viewport.
pub const SIZE: (u32, u32) = (960, 680);
/// Fonts tried first, in order (Debian/Ubuntu, Fedora, Arch, macOS, Windows).
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];
/// Folders scanned (a few levels deep) when no candidate exists.
const FONT_DIRS: &[&str] = &["/usr/share/fonts", "/usr/local/share/fonts", "/usr/X11R6/lib/X11/fonts"];

static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Finds and registers a font once per process. Returns the font's family name for text, or None
/// when no usable font exists (then draw without text).
pub fn font() -> Option<&'static str> {
    FONT.get_or_init(|| {
        let env = std::env::var_os("ROLI_FONT").map(PathBuf::from);
        let listed = FONT_CANDIDATES.iter().map(PathBuf::from);
        let candidates: Vec<PathBuf> =
            env.into_iter().chain(listed).filter(|p| p.is_file()).chain(scan_font_dirs()).collect();
        for p in candidates {
            let Ok(bytes) = std::fs::read(&p) else { continue };
            // register_font keeps a &'static [u8]; leaking one font file per process is the price.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                return Some(p);
            }
        }
        None
    })
    .as_ref()
    .map(|_| FAMILY)
}

/// The font file in use, if any (for the report's notes).
pub fn font_path() -> Option<&'static Path> {
    font().and(FONT.get().and_then(|p| p.as_deref()))
}

/// `.ttf` files under [`FONT_DIRS`], sans-serif regular faces first.
fn scan_font_dirs() -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten().take(2000) {
            let p = e.path();
            if p.is_dir() && depth > 0 {
                walk(&p, depth - 1, out);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("ttf")) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for d in FONT_DIRS {
        walk(Path::new(d), 4, &mut out);
    }
    let rank = |p: &PathBuf| {
        let n = p.file_name().map(|f| f.to_string_lossy().to_lowercase()).unwrap_or_default();
        let sans = n.contains("sans") && !n.contains("mono");
        let regular = !["bold", "italic", "oblique", "light", "condensed"].iter().any(|w| n.contains(w));
        (!sans, !regular, n)
    };
    out.sort_by_key(rank);
    out
}

/// One marker of Figure 1.
#[derive(Debug, Clone)]
pub struct ScatterPoint {
    pub source: Source,
    pub method: StageKind,
    pub init: Init,
    pub clean: Estimate,
    pub pgd: Estimate,
}

impl ScatterPoint {
    pub fn of(row: &Row, source: Source) -> Self {
        ScatterPoint { source, method: row.method, init: row.init, clean: row.clean, pgd: row.pgd }
    }
}

const RANLI: RGBColor = RGBColor(31, 119, 180);
const ROLI: RGBColor = RGBColor(214, 39, 40);
const PROBE: RGBColor = RGBColor(30, 30, 30);
const JOIN: RGBColor = RGBColor(150, 150, 150);
const ARROW: RGBColor = RGBColor(90, 90, 90);

fn colour(p: &ScatterPoint) -> RGBColor {
    match (p.method, p.init) {
        (StageKind::Probe, _) => PROBE,
        (_, Init::Ranli) => RANLI,
        (_, Init::Roli) => ROLI,
    }
}

/// An axis range in percent covering `values` with some margin, inside [0, 100].
fn span(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.0..100.0;
    }
    let pad = ((hi - lo) * 0.08).max(2.0);
    (lo - pad).max(0.0)..(hi + pad).min(100.0)
}

type DrawResult = Result<(), String>;

fn e<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

/// Figure 1: x = clean accuracy, y = PGD robust accuracy (percent) with 95% Wilson whiskers; an
/// arrow per method from RanLI (blue) to RoLI (red), as in the paper's Figure 1; the linear probe
/// as a black triangle; standard-pretraining runs (if any) as hollow markers with lighter arrows.
/// Labels name the arrow heads and lone points, placed clear of each other ([`super::labels`]).
fn draw_figure1<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    points: &[ScatterPoint],
    text: Option<&'static str>,
) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    let xr = span(points.iter().flat_map(|p| [p.clean.low * 100.0, p.clean.high * 100.0]));
    let yr = span(points.iter().flat_map(|p| [p.pgd.low * 100.0, p.pgd.high * 100.0]));
    let mut builder = ChartBuilder::on(root);
    builder.margin(24);
    if let Some(f) = text {
        builder.caption(title, (f, 22)).x_label_area_size(50).y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(xr.clone(), yr.clone()).map_err(e)?;
    {
        let mut mesh = chart.configure_mesh();
        mesh.max_light_lines(1).light_line_style(RGBColor(240, 240, 240)).bold_line_style(RGBColor(215, 215, 215));
        let whole = |v: &f64| format!("{v:.0}");
        if let Some(f) = text {
            mesh.x_label_formatter(&whole)
                .y_label_formatter(&whole)
                .x_desc("Clean accuracy (%)")
                .y_desc("PGD robust accuracy (%)")
                .label_style((f, 14))
                .axis_desc_style((f, 16));
        }
        mesh.draw().map_err(e)?;
    }
    if text.is_none() {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(xr.start, yr.start), (xr.end, yr.end)],
                BLACK.stroke_width(1),
            )))
            .map_err(e)?;
    }
    let xy = |p: &ScatterPoint| (p.clean.accuracy * 100.0, p.pgd.accuracy * 100.0);
    // 95% intervals as whiskers.
    for p in points {
        let c = colour(p).mix(0.35);
        let (x, y) = xy(p);
        chart
            .draw_series([
                PathElement::new([(p.clean.low * 100.0, y), (p.clean.high * 100.0, y)], c.stroke_width(1)),
                PathElement::new([(x, p.pgd.low * 100.0), (x, p.pgd.high * 100.0)], c.stroke_width(1)),
            ])
            .map_err(e)?;
    }
    // RanLI → RoLI arrows per method and source, in pixels so that the heads keep their shape.
    let coord = chart.as_coord_spec().clone();
    let px = |p: &ScatterPoint| coord.translate(&xy(p));
    let partner =
        |p: &ScatterPoint| points.iter().find(|q| q.init == Init::Roli && q.method == p.method && q.source == p.source);
    for p in points.iter().filter(|p| p.init == Init::Ranli && p.method != StageKind::Probe) {
        if let Some(q) = partner(p) {
            let c = if p.source == Source::Standard { JOIN.mix(0.7) } else { ARROW.mix(1.0) };
            arrow(root, px(p), px(q), c)?;
        }
    }
    // Markers, one series per legend entry.
    type Keep = fn(&ScatterPoint) -> bool;
    let groups: [(&str, Keep); 5] = [
        ("RanLI", |p| p.source == Source::Main && p.method != StageKind::Probe && p.init == Init::Ranli),
        ("RoLI", |p| p.source == Source::Main && p.method != StageKind::Probe && p.init == Init::Roli),
        ("linear probe (stage 1)", |p| p.source == Source::Main && p.method == StageKind::Probe),
        ("standard pretraining", |p| p.source == Source::Standard && p.method != StageKind::Probe),
        ("standard linear probe", |p| p.source == Source::Standard && p.method == StageKind::Probe),
    ];
    let mut legend_rows = 0;
    for (label, keep) in groups {
        let sel: Vec<&ScatterPoint> = points.iter().filter(|p| keep(p)).collect();
        let Some(first) = sel.first() else { continue };
        legend_rows += 1;
        let legend_colour = colour(first);
        let hollow = first.source == Source::Standard;
        let style = |p: &ScatterPoint| if hollow { colour(p).stroke_width(2) } else { colour(p).filled() };
        // Each group is all-probe or all-finetuned, so one marker shape per series.
        let series = if first.method == StageKind::Probe {
            chart.draw_series(sel.iter().map(|p| TriangleMarker::new(xy(p), 8, style(p)))).map_err(e)?
        } else {
            chart.draw_series(sel.iter().map(|p| Circle::new(xy(p), 6, style(p)))).map_err(e)?
        };
        let legend_style = if hollow { legend_colour.stroke_width(2) } else { legend_colour.filled() };
        if text.is_some() && first.method == StageKind::Probe {
            series.label(label).legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, legend_style));
        } else if text.is_some() {
            series.label(label).legend(move |(x, y)| Circle::new((x + 10, y), 5, legend_style));
        }
    }
    if let Some(f) = text {
        // Arrow heads and lone points carry the names; a RanLI tail is named by its arrow.
        let named: Vec<&ScatterPoint> = points
            .iter()
            .filter(|p| !(p.init == Init::Ranli && p.method != StageKind::Probe && partner(p).is_some()))
            .collect();
        let name = |p: &ScatterPoint| {
            let m = if p.method == StageKind::Probe { "linear" } else { p.method.as_str() };
            format!("{m}{}", if p.source == Source::Standard { " (std)" } else { "" })
        };
        let style = TextStyle::from((f, 13).into_font()).color(&RGBColor(40, 40, 40));
        let sizes: Vec<(i32, i32)> = named
            .iter()
            .map(|p| root.estimate_text_size(&name(p), &style).map(|(w, h)| (w as i32, h as i32)).unwrap_or((60, 13)))
            .collect();
        let (area_x, area_y) = chart.plotting_area().get_pixel_range();
        let bounds = Rect { x0: area_x.start, y0: area_y.start, x1: area_x.end, y1: area_y.end };
        let mut obstacles: Vec<Rect> = points.iter().map(|p| Rect::around(px(p), 7)).collect();
        // The legend's corner (lower right): about 20 px per row, 230 px wide.
        obstacles.push(Rect {
            x0: bounds.x1 - 240,
            y0: bounds.y1 - 20 * legend_rows - 24,
            x1: bounds.x1,
            y1: bounds.y1,
        });
        let anchors: Vec<(i32, i32)> = named.iter().map(|p| px(p)).collect();
        let boxes = super::labels::place(&anchors, &sizes, &obstacles, bounds);
        for ((p, b), a) in named.iter().zip(boxes).zip(anchors) {
            // A label pushed away from a crowd gets a leader line to its point.
            let near = (a.0.clamp(b.x0, b.x1), a.1.clamp(b.y0, b.y1));
            if (near.0 - a.0).pow(2) + (near.1 - a.1).pow(2) > 12 * 12 {
                root.draw(&PathElement::new(vec![a, near], RGBColor(120, 120, 120).stroke_width(1))).map_err(e)?;
            }
            root.draw(&Text::new(name(p), (b.x0, b.y0), style.clone())).map_err(e)?;
        }
        chart
            .configure_series_labels()
            .label_font((f, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)
}

/// An arrow from `a` to `b` in pixels, its head stopping short of `b`'s marker. Too short to
/// show a head (the two runs coincide): nothing.
fn arrow<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, a: (i32, i32), b: (i32, i32), c: RGBAColor) -> DrawResult {
    let (dx, dy) = ((b.0 - a.0) as f64, (b.1 - a.1) as f64);
    let len = dx.hypot(dy);
    let (marker, head, half) = (7.0, 10.0, 4.5);
    if len < marker + head + 2.0 {
        return Ok(());
    }
    let (ux, uy) = (dx / len, dy / len);
    let at = |t: f64, side: f64| {
        ((a.0 as f64 + ux * t - uy * side).round() as i32, (a.1 as f64 + uy * t + ux * side).round() as i32)
    };
    let tip = at(len - marker, 0.0);
    let base = len - marker - head;
    root.draw(&PathElement::new(vec![at(marker * 0.6, 0.0), at(base, 0.0)], c.stroke_width(2))).map_err(e)?;
    root.draw(&Polygon::new(vec![tip, at(base, half), at(base, -half)], c.filled())).map_err(e)
}

/// An AutoAttack accuracy on the eps plot: at the run's own eps, in the colour of the curve with
/// the same label (the curve is PGD: the gap between the cross and the curve is what AutoAttack
/// finds beyond PGD).
#[derive(Debug, Clone, PartialEq)]
pub struct AaPoint {
    pub label: String,
    pub eps: f64,
    /// Robust accuracy under AutoAttack, a fraction.
    pub accuracy: f64,
    /// Examples AutoAttack ran on.
    pub n: usize,
}

/// The colour of a curve named as the report's runs (`linear`, `full/RoLI`): Figure 1's for the
/// linear probe, RanLI and RoLI, else a palette's.
fn curve_colour(label: &str, i: usize) -> RGBAColor {
    if label.starts_with("linear") {
        PROBE.to_rgba()
    } else if label.contains("RoLI") {
        ROLI.to_rgba()
    } else if label.contains("RanLI") {
        RANLI.to_rgba()
    } else {
        Palette99::pick(i).to_rgba()
    }
}

/// PGD robust accuracy (percent) vs eps, one line per labelled curve, AutoAttack points as
/// crosses; accuracies are fractions.
fn draw_eps_curve<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    curves: &[(String, Vec<(f64, f64)>)],
    aa: &[AaPoint],
    text: Option<&'static str>,
) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for eps in curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)).chain(aa.iter().map(|a| a.eps)) {
        lo = lo.min(eps);
        hi = hi.max(eps);
    }
    if !lo.is_finite() {
        return Err("no points to plot".into());
    }
    if hi - lo < 1e-12 {
        hi = lo + 0.01;
    }
    let mut builder = ChartBuilder::on(root);
    builder.margin(24);
    if let Some(f) = text {
        builder.caption(title, (f, 22)).x_label_area_size(50).y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(lo..hi, 0.0..100.0).map_err(e)?;
    {
        let mut mesh = chart.configure_mesh();
        mesh.max_light_lines(1).light_line_style(RGBColor(240, 240, 240)).bold_line_style(RGBColor(215, 215, 215));
        let fmt = |v: &f64| format!("{v:.3}");
        let whole = |v: &f64| format!("{v:.0}");
        mesh.y_label_formatter(&whole);
        if let Some(f) = text {
            mesh.x_desc("eps")
                .y_desc("robust accuracy (%): lines PGD, crosses AutoAttack")
                .label_style((f, 14))
                .axis_desc_style((f, 16))
                .x_label_formatter(&fmt);
        }
        mesh.draw().map_err(e)?;
    }
    if text.is_none() {
        chart
            .draw_series(std::iter::once(Rectangle::new([(lo, 0.0), (hi, 100.0)], BLACK.stroke_width(1))))
            .map_err(e)?;
    }
    for (i, (label, pts)) in curves.iter().enumerate() {
        let c = curve_colour(label, i);
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (x, y * 100.0)).collect();
        let series = chart.draw_series(LineSeries::new(line.clone(), c.stroke_width(2))).map_err(e)?;
        if text.is_some() {
            series
                .label(format!("{label} (PGD)"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(e)?;
    }
    for (i, a) in aa.iter().enumerate() {
        let k = curves.iter().position(|(l, _)| *l == a.label).unwrap_or(curves.len() + i);
        let c = curve_colour(&a.label, k);
        let series = chart
            .draw_series(std::iter::once(Cross::new((a.eps, a.accuracy * 100.0), 7, c.stroke_width(3))))
            .map_err(e)?;
        if text.is_some() {
            series
                .label(format!("{} (AutoAttack, n = {})", a.label, a.n))
                .legend(move |(x, y)| Cross::new((x + 10, y), 5, c.stroke_width(2)));
        }
    }
    if let Some(f) = text {
        chart
            .configure_series_labels()
            .label_font((f, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)
}

/// The SVG names the private font family; viewers should use their own sans-serif instead.
fn fix_svg_font(svg: &Path) -> Result<(), super::ReportError> {
    let io = |e: std::io::Error| super::ReportError::Io { path: svg.to_path_buf(), source: e };
    let text = std::fs::read_to_string(svg).map_err(io)?;
    let fixed = text.replace(&format!("font-family=\"{FAMILY}\""), "font-family=\"sans-serif\"");
    if fixed != text {
        std::fs::write(svg, fixed).map_err(io)?;
    }
    Ok(())
}

/// Figure 1 as `figure1.png` and `figure1.svg` in `dir`; `text` is [`font`]'s result (None: no text).
pub fn figure1(
    dir: &Path,
    title: &str,
    points: &[ScatterPoint],
    text: Option<&'static str>,
) -> Result<(PathBuf, PathBuf), super::ReportError> {
    let png = dir.join("figure1.png");
    let svg = dir.join("figure1.svg");
    draw_figure1(&BitMapBackend::new(&png, SIZE).into_drawing_area(), title, points, text)
        .map_err(|detail| super::ReportError::Plot { path: png.clone(), detail })?;
    draw_figure1(&SVGBackend::new(&svg, SIZE).into_drawing_area(), title, points, text)
        .map_err(|detail| super::ReportError::Plot { path: svg.clone(), detail })?;
    fix_svg_font(&svg)?;
    Ok((png, svg))
}

/// The eps curve as `eps_curve.png` and `eps_curve.svg` in `dir`.
pub fn eps_curve(
    dir: &Path,
    title: &str,
    curves: &[(String, Vec<(f64, f64)>)],
    aa: &[AaPoint],
    text: Option<&'static str>,
) -> Result<(PathBuf, PathBuf), super::ReportError> {
    let png = dir.join("eps_curve.png");
    let svg = dir.join("eps_curve.svg");
    draw_eps_curve(&BitMapBackend::new(&png, SIZE).into_drawing_area(), title, curves, aa, text)
        .map_err(|detail| super::ReportError::Plot { path: png.clone(), detail })?;
    draw_eps_curve(&SVGBackend::new(&svg, SIZE).into_drawing_area(), title, curves, aa, text)
        .map_err(|detail| super::ReportError::Plot { path: svg.clone(), detail })?;
    fix_svg_font(&svg)?;
    Ok((png, svg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::compare::Estimate;
    use crate::report::stats::Z95;

    fn points() -> Vec<ScatterPoint> {
        let est = |k| Estimate::new(k, 200, Z95);
        vec![
            ScatterPoint {
                source: Source::Main,
                method: StageKind::Probe,
                init: Init::Ranli,
                clean: est(158),
                pgd: est(75),
            },
            ScatterPoint {
                source: Source::Main,
                method: StageKind::full(),
                init: Init::Ranli,
                clean: est(152),
                pgd: est(80),
            },
            ScatterPoint {
                source: Source::Main,
                method: StageKind::full(),
                init: Init::Roli,
                clean: est(168),
                pgd: est(92),
            },
            ScatterPoint {
                source: Source::Standard,
                method: StageKind::full(),
                init: Init::Ranli,
                clean: est(150),
                pgd: est(10),
            },
        ]
    }

    #[test]
    fn figures_without_text_touch_no_font() {
        // No family is registered for plotters' default names: any text call would error here,
        // as drawing with text in such a family shows.
        let dir = tempfile::tempdir().unwrap();
        assert!(figure1(dir.path(), "t", &points(), Some("sans-serif")).is_err(), "an unregistered family must fail");
        let (png, svg) = figure1(dir.path(), "t", &points(), None).unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 1000 && std::fs::metadata(&svg).unwrap().len() > 500);
        let svg_text = std::fs::read_to_string(&svg).unwrap();
        assert!(!svg_text.contains("<text"), "no-text mode wrote text");
        eps_curve(
            dir.path(),
            "t",
            &[("full/RoLI".into(), vec![(0.0, 0.8), (4.0 / 255.0, 0.6), (8.0 / 255.0, 0.4)])],
            &[AaPoint { label: "full/RoLI".into(), eps: 8.0 / 255.0, accuracy: 0.35, n: 50 }],
            None,
        )
        .unwrap();
        assert!(eps_curve(dir.path(), "t", &[], &[], None).is_err());
    }

    #[test]
    fn figures_with_a_font_have_labels() {
        let Some(f) = font() else {
            println!("skipped: no TrueType font found (set ROLI_FONT=/path/to/font.ttf)");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (png, svg) = figure1(dir.path(), "Figure 1", &points(), Some(f)).unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 1000);
        let svg_text = std::fs::read_to_string(&svg).unwrap();
        assert!(
            svg_text.contains("Clean accuracy (%)") && svg_text.contains("RoLI") && svg_text.contains("linear probe"),
            "labels missing"
        );
        assert!(
            svg_text.contains("font-family=\"sans-serif\"") && !svg_text.contains(FAMILY),
            "private family name leaked into the SVG"
        );
    }

    #[test]
    fn span_pads_and_clamps() {
        assert_eq!(span([50.0, 60.0].into_iter()), 48.0..62.0);
        let r = span([0.5, 99.9].into_iter());
        assert!(r.start == 0.0 && r.end == 100.0);
        assert_eq!(span(std::iter::empty()), 0.0..100.0);
    }
}
