//! Streaming evaluation: a source that builds each batch lazily gives the same report as the whole
//! split in memory, and never asks for more than one batch of rows at a time.

use roli_attacks::{
    evaluate, evaluate_examples, sweep, sweep_examples, AttackSpec, EvalOptions, EvalReport, Examples, FnExamples,
    Norm, ProgressEvent, ThreatModel,
};
use std::cell::{Cell, RefCell};
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

const SIDE: i64 = 8;
const N: usize = 37;
const BATCH: usize = 16;

/// Attacks seed libtorch's global generator: the tests of this file take turns (cargo runs them on
/// parallel threads of one process), or one test's draws would land in another's attack.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fixed random 10-class conv net on 1×8×8 images.
struct Net {
    conv: Tensor,
    lin: Tensor,
}

impl Net {
    fn new() -> Self {
        tch::manual_seed(11);
        let conv = Tensor::randn([8, 1, 3, 3], (Kind::Float, Device::Cpu)) * 0.5;
        let lin = Tensor::randn([10, 8 * SIDE * SIDE], (Kind::Float, Device::Cpu)) * (0.5 / SIDE as f64);
        Self { conv, lin }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = x.conv2d::<Tensor>(&self.conv, None, [1, 1], [1, 1], [1, 1], 1).relu();
        h.reshape([x.size()[0], -1]).linear::<Tensor>(&self.lin, None) * 4.0
    }
}

/// Pixels of row `i`, from a per-row integer hash (exact, so every batch holding row i agrees).
fn pixels(i: usize) -> Vec<f32> {
    let mut s = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
    (0..SIDE * SIDE)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn rows_x(rows: &[usize]) -> Tensor {
    let v: Vec<f32> = rows.iter().flat_map(|&i| pixels(i)).collect();
    Tensor::from_slice(&v).view([rows.len() as i64, 1, SIDE, SIDE])
}

/// The whole split in memory; labels: the model's own prediction for 2 of 3 rows, a fixed other
/// class for the rest, so some points are misclassified clean.
fn split(net: &Net) -> (Tensor, Tensor, Vec<i64>) {
    let all: Vec<usize> = (0..N).collect();
    let x = rows_x(&all);
    let pred: Vec<i64> = Vec::try_from(&tch::no_grad(|| net.forward(&x)).argmax(1, false)).unwrap();
    let labels: Vec<i64> =
        pred.iter().enumerate().map(|(i, &p)| if i % 3 == 0 { (p + 1 + i as i64) % 10 } else { p }).collect();
    let y = Tensor::from_slice(&labels);
    (x, y, labels)
}

/// Reads of a lazy source: calls, rows in all, most rows in one call.
#[derive(Default)]
struct Reads {
    calls: Cell<usize>,
    rows: Cell<usize>,
    most: Cell<usize>,
}

fn lazy<'a>(labels: &'a [i64], reads: &'a Reads) -> impl Examples + 'a {
    FnExamples::new(N, move |rows: &[usize]| {
        assert!(rows.len() <= BATCH, "asked for {} rows at once (batch {BATCH})", rows.len());
        assert!(rows.iter().all(|&r| r < N));
        reads.calls.set(reads.calls.get() + 1);
        reads.rows.set(reads.rows.get() + rows.len());
        reads.most.set(reads.most.get().max(rows.len()));
        let y: Vec<i64> = rows.iter().map(|&i| labels[i]).collect();
        Ok((rows_x(rows), Tensor::from_slice(&y)))
    })
}

/// The report without wall-clock times.
fn timeless(mut r: EvalReport) -> EvalReport {
    r.seconds = 0.0;
    for s in &mut r.stages {
        s.seconds = 0.0;
    }
    r
}

fn timeless_event(e: &ProgressEvent) -> ProgressEvent {
    match e {
        ProgressEvent::StageEnd(s) => {
            let mut s = s.clone();
            s.seconds = 0.0;
            ProgressEvent::StageEnd(s)
        }
        other => other.clone(),
    }
}

/// Runs `spec` in memory and streamed; asserts equal reports and progress, and bounded reads.
fn in_memory_equals_streamed(spec: &AttackSpec, threat: ThreatModel) -> EvalReport {
    let net = Net::new();
    let model = |x: &Tensor| net.forward(x);
    let (x, y, labels) = split(&net);
    let idx: Vec<usize> = (0..N).map(|i| 1000 + 3 * i).collect();
    let events = RefCell::new(Vec::new());
    let record = |e: &ProgressEvent| events.borrow_mut().push(timeless_event(e));
    let mut o = EvalOptions::new(threat);
    o.batch_size = BATCH;
    o.seed = 7;
    o.indices = Some(&idx);
    o.progress = Some(&record);

    let memory = timeless(evaluate(&model, &x, &y, spec, &o).unwrap());
    let memory_events = events.take();
    let reads = Reads::default();
    let streamed = timeless(evaluate_examples(&model, &lazy(&labels, &reads), spec, &o).unwrap());
    let streamed_events = events.take();

    assert_eq!(memory, streamed, "{spec}: in-memory and streamed reports differ");
    assert_eq!(memory_events, streamed_events, "{spec}: progress differs");
    check_progress(&memory_events, N);
    // The data is read once in order by the clean pass, once for the zero-gradient check on the
    // first clean-correct points, and once per attacked chunk; never more than a batch at a time.
    let correct = memory.examples.iter().filter(|e| e.clean_correct).count();
    let attacked: usize = memory.stages.iter().map(|s| s.n_attacked).sum();
    let chunks: usize = memory.stages.iter().map(|s| s.n_attacked.div_ceil(BATCH)).sum();
    assert_eq!(reads.rows.get(), N + correct.min(BATCH) + attacked, "{spec}: rows read");
    assert_eq!(reads.calls.get(), N.div_ceil(BATCH) + 1 + chunks, "{spec}: source calls");
    assert_eq!(reads.most.get(), BATCH);
    memory
}

fn check_progress(events: &[ProgressEvent], n: usize) {
    let mut robust = None;
    for e in events {
        match e {
            ProgressEvent::Batch { robust_so_far, n: all, done, total, .. } => {
                assert_eq!(*all, n);
                assert!(done <= total && *robust_so_far <= n);
                robust = Some(*robust_so_far);
            }
            ProgressEvent::StageEnd(s) => {
                let after = (s.robust_accuracy * n as f64).round() as usize;
                assert_eq!(robust.take().unwrap_or(after), after, "last batch's robust count != stage's");
            }
            _ => {}
        }
    }
}

#[test]
fn pgd_streamed_equals_in_memory() {
    let _turn = one_at_a_time();
    let r = in_memory_equals_streamed(&"pgd".parse().unwrap(), ThreatModel::Linf { eps: 0.04 });
    assert!(r.robust_accuracy > 0.0 && r.robust_accuracy < r.clean_accuracy, "want a mixed outcome: {r:?}");
    assert!(r.clean_accuracy < 1.0);
    let r = in_memory_equals_streamed(&AttackSpec::with_pgd(5, Some(0.06), 2), ThreatModel::L2 { eps: 0.3 });
    assert!(r.robust_accuracy < r.clean_accuracy);
}

#[test]
fn autoattack_standard_streamed_equals_in_memory() {
    let _turn = one_at_a_time();
    let r = in_memory_equals_streamed(&"aa-standard".parse().unwrap(), ThreatModel::Linf { eps: 0.03 });
    assert_eq!(r.stages.len(), 4);
    assert!(r.robust_accuracy < r.clean_accuracy, "AA broke nothing");
    assert!(r.stages.iter().any(|s| s.n_broken > 0 && s.id != roli_attacks::StageId::ApgdCe));
}

#[test]
fn progress_reports_clean_batches_and_robust_so_far() {
    let _turn = one_at_a_time();
    let net = Net::new();
    let model = |x: &Tensor| net.forward(x);
    let (x, y, _) = split(&net);
    let events = RefCell::new(Vec::new());
    let record = |e: &ProgressEvent| events.borrow_mut().push(e.clone());
    let mut o = EvalOptions::new(ThreatModel::Linf { eps: 0.04 });
    o.batch_size = BATCH;
    o.progress = Some(&record);
    let _ = evaluate(&model, &x, &y, &"apgd-ce".parse().unwrap(), &o).unwrap();
    let ev = events.take();
    let clean: Vec<(usize, usize)> = ev
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::CleanBatch { done, n } => Some((*done, *n)),
            _ => None,
        })
        .collect();
    assert_eq!(clean, vec![(16, N), (32, N), (37, N)]);
    check_progress(&ev, N);
}

#[test]
fn sweep_and_resume_streamed_equal_in_memory() {
    let _turn = one_at_a_time();
    let net = Net::new();
    let model = |x: &Tensor| net.forward(x);
    let (x, y, labels) = split(&net);
    let spec = AttackSpec::with_pgd(4, Some(0.01), 1);
    let mut o = EvalOptions::new(ThreatModel::new(Norm::Linf, 0.0));
    o.batch_size = BATCH;
    let reads = Reads::default();
    let a = sweep(&model, &x, &y, &spec, &[0.0, 0.03], &o).unwrap();
    let b = sweep_examples(&model, &lazy(&labels, &reads), &spec, &[0.0, 0.03], &o).unwrap();
    assert_eq!(a.flags, b.flags);
    for (ra, rb) in a.reports.into_iter().zip(b.reports) {
        assert_eq!(timeless(ra), timeless(rb));
    }
    assert_eq!(reads.most.get(), BATCH);

    // A state written by a streamed run resumes in memory (the fingerprint is the same both ways).
    let dir = tempfile::tempdir().unwrap();
    let mut o = EvalOptions::new(ThreatModel::Linf { eps: 0.03 });
    o.batch_size = BATCH;
    o.state_path = Some(dir.path().join("state.json"));
    let first = evaluate_examples(&model, &lazy(&labels, &reads), &spec, &o).unwrap();
    let events = RefCell::new(Vec::new());
    let record = |e: &ProgressEvent| events.borrow_mut().push(e.clone());
    o.progress = Some(&record);
    let again = evaluate(&model, &x, &y, &spec, &o).unwrap();
    assert_eq!((first.resumed_stages, again.resumed_stages), (0, 1));
    assert_eq!(first.examples, again.examples);
    assert_eq!(again.passes.forward_calls, 0, "a resumed run reads the data but runs no model");
    let ev = events.take();
    assert!(ev.iter().any(|e| matches!(e, ProgressEvent::ResumeCheckBatch { done: N, n: N })), "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, ProgressEvent::CleanBatch { .. })));
}

#[test]
fn an_interrupted_sweep_resumes_its_finished_radii_and_a_changed_pixel_is_refused() {
    let _turn = one_at_a_time();
    let net = Net::new();
    let model = |x: &Tensor| net.forward(x);
    let (x, y, _) = split(&net);
    let spec = AttackSpec::with_pgd(4, Some(0.01), 1);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    // The sweep was killed after its first radius: that radius's state is on disk.
    let mut o = EvalOptions::new(ThreatModel::Linf { eps: 0.03 });
    o.batch_size = BATCH;
    o.state_path = Some(roli_attacks::sweep_state_path(&state, 0.03));
    let first = evaluate(&model, &x, &y, &spec, &o).unwrap();
    o.state_path = Some(state.clone());
    let sw = sweep(&model, &x, &y, &spec, &[0.03, 0.06], &o).unwrap();
    assert_eq!(sw.reports[0].resumed_stages, 1, "the finished radius is resumed, not re-run");
    assert_eq!(sw.reports[0].passes.forward_calls, 0);
    assert_eq!(sw.reports[0].examples, first.examples);
    assert_eq!(sw.reports[1].resumed_stages, 0);
    for eps in [0.03, 0.06] {
        assert!(!roli_attacks::sweep_state_path(&state, eps).exists(), "a finished sweep removes its states");
    }

    // A state is bound to the exact pixels: two pixels swapped (the same pixel sum) are another input.
    o.state_path = Some(state.clone());
    evaluate(&model, &x, &y, &spec, &o).unwrap();
    let moved = x.copy();
    let row = moved.get(0).get(0).get(0);
    let (a, b) = (row.get(0).double_value(&[]), row.get(1).double_value(&[]));
    assert_ne!(a, b);
    let _ = row.get(0).fill_(b);
    let _ = row.get(1).fill_(a);
    let e = evaluate(&model, &moved, &y, &spec, &o).unwrap_err().to_string();
    assert!(e.contains("another configuration"), "{e}");
}
