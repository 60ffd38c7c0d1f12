//! Running sums of a training epoch kept on the device. Reading a value from a GPU waits for all
//! queued work, so the loop reads the meter only every few batches (every batch on the CPU,
//! where reading costs nothing) and once at the end of the epoch.
use tch::{Device, Kind, Tensor};

/// How often the training loop reads the meter on `device` (loss for the progress bar, and the
/// non-finite-loss stop).
pub fn read_every(device: Device) -> usize {
    match device {
        Device::Cpu => 1,
        _ => 20,
    }
}

/// Loss and accuracy sums of an epoch, and the first batch whose loss was not finite.
pub struct EpochMeter {
    loss_sum: Tensor,
    correct: Tensor,
    last_loss: Tensor,
    first_nonfinite: Tensor,
    seen: usize,
}

/// What the meter holds at a read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub mean_loss: f64,
    pub accuracy: f64,
    pub last_loss: f64,
    /// The first batch (index in the epoch) whose loss was NaN or infinite.
    pub first_nonfinite: Option<usize>,
}

const NONE: i64 = i64::MAX;

impl EpochMeter {
    pub fn new(device: Device) -> Self {
        let zero = || Tensor::zeros([], (Kind::Double, device));
        EpochMeter {
            loss_sum: zero(),
            correct: zero(),
            last_loss: zero(),
            first_nonfinite: Tensor::full([], NONE, (Kind::Int64, device)),
            seen: 0,
        }
    }

    /// Adds batch `batch` of `n` examples: its mean `loss` and its count of `correct` predictions
    /// (0-d device tensors; nothing is read to the host).
    pub fn add(&mut self, batch: usize, loss: &Tensor, correct: &Tensor, n: usize) {
        let loss = loss.detach().to_kind(Kind::Double);
        let bad = loss.isfinite().logical_not().logical_and(&self.first_nonfinite.eq(NONE));
        self.first_nonfinite = self.first_nonfinite.where_self(&bad.logical_not(), &Tensor::from(batch as i64));
        self.loss_sum += &loss * n as f64;
        self.correct += correct.to_kind(Kind::Double);
        self.last_loss = loss;
        self.seen += n;
    }

    /// The running sums as named CPU tensors, for a mid-epoch checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let cpu = |t: &Tensor| t.to_device(Device::Cpu);
        vec![
            ("loss_sum".into(), cpu(&self.loss_sum)),
            ("correct".into(), cpu(&self.correct)),
            ("last_loss".into(), cpu(&self.last_loss)),
            ("first_nonfinite".into(), cpu(&self.first_nonfinite)),
            ("seen".into(), Tensor::from(self.seen as i64)),
        ]
    }

    /// A meter on `device` holding the sums of [`EpochMeter::state_tensors`]; errors name what
    /// is missing.
    pub fn from_state(device: Device, tensors: &[(String, Tensor)]) -> anyhow::Result<Self> {
        let get = |name: &str| -> anyhow::Result<Tensor> {
            let t = tensors.iter().find(|(n, _)| n == name);
            Ok(t.ok_or_else(|| anyhow::anyhow!("the epoch's running sums lack '{name}'"))?.1.to_device(device))
        };
        Ok(EpochMeter {
            loss_sum: get("loss_sum")?,
            correct: get("correct")?,
            last_loss: get("last_loss")?,
            first_nonfinite: get("first_nonfinite")?,
            seen: get("seen")?.int64_value(&[]) as usize,
        })
    }

    /// The sums so far (one host synchronisation).
    pub fn read(&self) -> Reading {
        let first = self.first_nonfinite.to_kind(Kind::Double);
        let all = Tensor::stack(&[&self.loss_sum, &self.correct, &self.last_loss, &first], 0);
        let v = Vec::<f64>::try_from(all.to_device(Device::Cpu)).unwrap_or_else(|_| vec![f64::NAN, 0.0, f64::NAN, 0.0]);
        let seen = self.seen.max(1) as f64;
        Reading {
            mean_loss: v[0] / seen,
            accuracy: v[1] / seen,
            last_loss: v[2],
            // Batch indices are far below 2^53, where f64 holds every integer exactly.
            first_nonfinite: (v[3] < NONE as f64).then_some(v[3] as usize),
        }
    }
}

/// Number of rows whose arg-max logit is the label, as a 0-d device tensor.
pub fn correct_count(logits: &Tensor, y: &Tensor) -> Tensor {
    logits.argmax(-1, false).eq_tensor(y).sum(Kind::Int64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: f64) -> Tensor {
        Tensor::from(v)
    }

    #[test]
    fn sums_means_and_the_first_nonfinite_batch() {
        let mut m = EpochMeter::new(Device::Cpu);
        m.add(0, &t(2.0), &Tensor::from(3i64), 4);
        m.add(1, &t(1.0), &Tensor::from(1i64), 2);
        let r = m.read();
        assert!((r.mean_loss - (2.0 * 4.0 + 1.0 * 2.0) / 6.0).abs() < 1e-12);
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!((r.last_loss, r.first_nonfinite), (1.0, None));
        m.add(2, &t(f64::NAN), &Tensor::from(0i64), 2);
        m.add(3, &t(f64::INFINITY), &Tensor::from(0i64), 2);
        assert_eq!(m.read().first_nonfinite, Some(2), "the first bad batch is kept");
    }

    #[test]
    fn sums_survive_a_checkpoint_exactly() {
        let mut m = EpochMeter::new(Device::Cpu);
        m.add(0, &t(0.1), &Tensor::from(3i64), 4);
        let mut back = EpochMeter::from_state(Device::Cpu, &m.state_tensors()).unwrap();
        for meter in [&mut m, &mut back] {
            meter.add(1, &t(f64::INFINITY), &Tensor::from(1i64), 3);
            meter.add(2, &t(0.7), &Tensor::from(2i64), 3);
        }
        assert_eq!(back.read(), m.read());
        let e = EpochMeter::from_state(Device::Cpu, &[]).err().unwrap().to_string();
        assert!(e.contains("lack 'loss_sum'"), "{e}");
    }

    #[test]
    fn correct_counts_argmax_hits() {
        let logits = Tensor::from_slice(&[0.1f32, 0.9, 0.8, 0.2, 0.3, 0.7]).view([3, 2]);
        let y = Tensor::from_slice(&[1i64, 1, 1]);
        assert_eq!(correct_count(&logits, &y).int64_value(&[]), 2);
    }
}
