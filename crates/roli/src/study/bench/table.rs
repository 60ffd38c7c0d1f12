//! The printed table of a benchmark (`roli bench` without `--json`).
use super::*;

/// Flags an item whose two sides did noticeably different work (attacks skip fooled points, and
/// the two implementations may fool different ones).
pub(super) fn work_note(a: Option<&SideTiming>, b: Option<&SideTiming>) -> Option<String> {
    let (a, b) = (a?, b?);
    let (fa, fb) = (a.work.forward_examples, b.work.forward_examples);
    let differs = |x: f64, y: f64| (x - y).abs() > 0.1 * x.max(y);
    (differs(fa, fb) || differs(a.work.backward_examples, b.work.backward_examples)).then(|| {
        format!(
            "work differs: forward/backward examples per iter roli {:.0}/{:.0}, PyTorch {:.0}/{:.0}",
            fa, a.work.backward_examples, fb, b.work.backward_examples
        )
    })
}

/// About three significant digits: `1234`, `56.7`, `8.90`, `0.123`, `4.6e-3`.
pub(super) fn fmt_rate(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() && x >= 100.0 => format!("{x:.0}"),
        Some(x) if x.is_finite() && x >= 10.0 => format!("{x:.1}"),
        Some(x) if x.is_finite() && x >= 1.0 => format!("{x:.2}"),
        Some(x) if x.is_finite() && x >= 0.01 => format!("{x:.3}"),
        Some(x) if x.is_finite() && x > 0.0 => format!("{x:.1e}"),
        Some(0.0) => "0".into(),
        _ => "-".into(),
    }
}

pub(super) fn fmt_bytes(v: Option<u64>) -> String {
    match v {
        Some(b) if b >= 1 << 30 => format!("{:.1}G", b as f64 / (1u64 << 30) as f64),
        Some(b) => format!("{:.0}M", b as f64 / (1u64 << 20) as f64),
        None => "-".into(),
    }
}

pub(super) fn pair(a: String, b: String) -> String {
    format!("{a} / {b}")
}

/// The table `roli bench` prints.
pub fn table(r: &BenchReport) -> String {
    let s = &r.settings;
    let mut out = String::new();
    out.push_str(&format!(
        "{} at {}px ({}ch), batch {}, {} classes, {} ({}), {} threads, {} warm-up + {} timed iterations; AA on {} images, {} iterations, {} targets\n",
        s.preset, s.image_size, s.channels, s.batch, s.classes, s.device, s.precision, s.threads, s.warmup, s.iters,
        s.aa_n, s.aa_iters, s.aa_targets
    ));
    match r.torch.status.as_str() {
        "ok" => out.push_str(&format!(
            "PyTorch side: {} (torch {}, {}){}\n",
            r.torch.python.as_deref().unwrap_or("?"),
            r.torch.versions.get("torch").and_then(Value::as_str).unwrap_or("?"),
            r.torch.versions.get("autoattack").and_then(Value::as_str).unwrap_or("?"),
            match r.torch.parity.get("max_abs_logit_diff").and_then(Value::as_f64) {
                Some(d) => format!("; same model: max |logit diff| {d:.2e}"),
                None => String::new(),
            }
        )),
        _ => {
            out.push_str(&format!("PyTorch side missing: {}\n", r.torch.reason.as_deref().unwrap_or("unknown reason")))
        }
    }
    let header = [
        "item",
        "roli img/s",
        "PyTorch img/s",
        "roli/PyTorch",
        "peak mem roli/PT",
        "TFLOP/s roli/PT",
        "% peak roli/PT",
    ];
    let mut rows: Vec<[String; 7]> = vec![header.map(String::from)];
    let mut notes = Vec::new();
    for i in &r.items {
        let (a, b) = (i.roli.as_ref(), i.torch.as_ref());
        let get = |t: Option<&SideTiming>, f: fn(&SideTiming) -> Option<f64>| t.and_then(f);
        rows.push([
            i.item.clone(),
            fmt_rate(a.map(|t| t.images_per_s)),
            fmt_rate(b.map(|t| t.images_per_s)),
            i.ratio.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into()),
            pair(fmt_bytes(a.and_then(|t| t.peak_memory_bytes)), fmt_bytes(b.and_then(|t| t.peak_memory_bytes))),
            pair(fmt_rate(get(a, |t| t.tflops)), fmt_rate(get(b, |t| t.tflops))),
            pair(fmt_rate(get(a, |t| t.pct_of_peak)), fmt_rate(get(b, |t| t.pct_of_peak))),
        ]);
        if let Some(n) = &i.note {
            notes.push(format!("  {}: {n}", i.item));
        }
    }
    let widths: Vec<usize> = (0..7).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, v)| if c == 0 { format!("{v:<w$}", w = widths[c]) } else { format!("{v:>w$}", w = widths[c]) })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&match &r.flops {
        Some(f) => format!("FLOPs: {}\n", f.source),
        None => "FLOPs: unknown without the PyTorch side (TFLOP/s shown as -)\n".into(),
    });
    if s.peak_tflops.is_none() {
        out.push_str("% peak: pass --peak-tflops for the device's peak at this precision\n");
    }
    out.push_str("peak mem: peak bytes allocated by each side's CUDA caching allocator during the timed iterations (CUDA only)\n");
    if !notes.is_empty() {
        out.push_str("notes:\n");
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

/// Writes the report as JSON (atomically).
pub fn write(path: &Path, r: &BenchReport) -> anyhow::Result<()> {
    artifacts::write_json(path, r)
}
