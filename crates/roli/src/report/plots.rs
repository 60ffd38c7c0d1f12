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
use super::records::Source;
use crate::config::{Init, StageKind};
use plotters::coord::Shift;
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

/// Figure 1: x = clean accuracy, y = PGD robust accuracy (percent) with 95% Wilson whiskers; RanLI
/// and RoLI in two colours joined per method (RanLI → RoLI), the linear probe as a black
/// triangle, standard-pretraining runs (if any) as hollow markers.
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
    // RanLI → RoLI per method and source.
    for p in points.iter().filter(|p| p.init == Init::Ranli && p.method != StageKind::Probe) {
        if let Some(q) = points.iter().find(|q| q.init == Init::Roli && q.method == p.method && q.source == p.source) {
            chart.draw_series(LineSeries::new([xy(p), xy(q)], JOIN.stroke_width(2))).map_err(e)?;
        }
    }
    // 95% intervals as whiskers.
    for p in points {
        let c = colour(p).mix(0.45);
        let (x, y) = xy(p);
        chart
            .draw_series([
                PathElement::new([(p.clean.low * 100.0, y), (p.clean.high * 100.0, y)], c.stroke_width(1)),
                PathElement::new([(x, p.pgd.low * 100.0), (x, p.pgd.high * 100.0)], c.stroke_width(1)),
            ])
            .map_err(e)?;
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
    for (label, keep) in groups {
        let sel: Vec<&ScatterPoint> = points.iter().filter(|p| keep(p)).collect();
        let Some(first) = sel.first() else { continue };
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
        if let Some(f) = text {
            let name = |p: &ScatterPoint| {
                format!("{}{}", p.method.as_str(), if p.source == Source::Standard { " (std)" } else { "" })
            };
            chart
                .draw_series(sel.iter().map(|p| EmptyElement::at(xy(p)) + Text::new(name(p), (8, -16), (f, 13))))
                .map_err(e)?;
        }
    }
    if let Some(f) = text {
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

/// Robust accuracy (percent) vs eps, one line per labelled curve; accuracies are fractions.
fn draw_eps_curve<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    curves: &[(String, Vec<(f64, f64)>)],
    text: Option<&'static str>,
) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (eps, _) in curves.iter().flat_map(|(_, c)| c.iter()) {
        lo = lo.min(*eps);
        hi = hi.max(*eps);
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
        let fmt = |v: &f64| format!("{v:.4}");
        let whole = |v: &f64| format!("{v:.0}");
        mesh.y_label_formatter(&whole);
        if let Some(f) = text {
            mesh.x_desc("eps")
                .y_desc("robust accuracy (%)")
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
        let c = Palette99::pick(i).to_rgba();
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (x, y * 100.0)).collect();
        let series = chart.draw_series(LineSeries::new(line.clone(), c.stroke_width(2))).map_err(e)?;
        if text.is_some() {
            series
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(e)?;
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
    text: Option<&'static str>,
) -> Result<(PathBuf, PathBuf), super::ReportError> {
    let png = dir.join("eps_curve.png");
    let svg = dir.join("eps_curve.svg");
    draw_eps_curve(&BitMapBackend::new(&png, SIZE).into_drawing_area(), title, curves, text)
        .map_err(|detail| super::ReportError::Plot { path: png.clone(), detail })?;
    draw_eps_curve(&SVGBackend::new(&svg, SIZE).into_drawing_area(), title, curves, text)
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
            None,
        )
        .unwrap();
        assert!(eps_curve(dir.path(), "t", &[], None).is_err());
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
