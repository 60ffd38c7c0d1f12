//! Where an evaluation's examples come from: [`Examples`], fetched batch by batch.
//!
//! The evaluation never holds the whole split: the clean pass reads it in order, batch by batch,
//! and each stage of the cascade fetches only the chunk of still-robust rows it attacks next. So a
//! test set that does not fit in memory can be evaluated, and on a GPU each batch can go from the
//! dataset straight to the device. [`TensorExamples`] serves a split already in memory (what
//! [`crate::evaluate`] uses), [`FnExamples`] wraps a closure (e.g. a dataset loader).

use crate::AttackError;
use tch::{Device, Tensor};

/// The examples of one evaluation, served batch by batch.
///
/// `rows` are positions `0..len()` of the evaluated set (not dataset indices: those are
/// [`crate::EvalOptions::indices`]). `batch` returns `(x, y)` with `x` `[rows.len(), C, H, W]` f32 in
/// [0, 1] and `y` `[rows.len()]` int64, in the order of `rows`, both already on the device the model
/// runs on. The same row must always give the same values: the evaluation fetches a row again for
/// each stage that attacks it. The evaluation asks for at most `batch_size` rows per call.
pub trait Examples {
    /// Number of examples.
    fn len(&self) -> usize;

    /// Whether there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The examples at positions `rows`, on the model's device.
    fn batch(&self, rows: &[usize]) -> Result<(Tensor, Tensor), AttackError>;
}

/// A split already in memory: `x` `[N, C, H, W]` f32, `y` `[N]` int64. Each batch is gathered with
/// `index_select` on `x`'s device; the labels are moved there too.
pub struct TensorExamples {
    x: Tensor,
    y: Tensor,
}

impl TensorExamples {
    /// Serves `(x, y)` (shallow copies; `x` detached). Shapes and kinds are checked per batch.
    pub fn new(x: &Tensor, y: &Tensor) -> Self {
        Self { x: x.detach(), y: y.shallow_clone() }
    }
}

impl Examples for TensorExamples {
    fn len(&self) -> usize {
        self.x.size().first().copied().unwrap_or(0) as usize
    }

    fn batch(&self, rows: &[usize]) -> Result<(Tensor, Tensor), AttackError> {
        let dev = self.x.device();
        let idx = rows_tensor(rows, dev);
        let xb = self.x.index_select(0, &idx);
        let yb = if self.y.device() == dev {
            self.y.index_select(0, &idx)
        } else {
            self.y.index_select(0, &idx.to_device(self.y.device())).to_device(dev)
        };
        Ok((xb, yb))
    }
}

/// Examples produced by a closure `rows -> (x, y)`, e.g. a dataset that reads and decodes each batch.
pub struct FnExamples<F> {
    len: usize,
    f: F,
}

impl<F: Fn(&[usize]) -> Result<(Tensor, Tensor), AttackError>> FnExamples<F> {
    /// `len` examples; `f` returns the batch of the given rows (see [`Examples::batch`]).
    pub fn new(len: usize, f: F) -> Self {
        Self { len, f }
    }
}

impl<F: Fn(&[usize]) -> Result<(Tensor, Tensor), AttackError>> Examples for FnExamples<F> {
    fn len(&self) -> usize {
        self.len
    }

    fn batch(&self, rows: &[usize]) -> Result<(Tensor, Tensor), AttackError> {
        (self.f)(rows)
    }
}

/// `rows` as an int64 index tensor on `dev`.
pub(crate) fn rows_tensor(rows: &[usize], dev: Device) -> Tensor {
    let v: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    Tensor::from_slice(&v).to_device(dev)
}

/// Fetches `rows` and checks what came back: `x` f32 `[rows.len(), ...]`, `y` int64 `[rows.len()]`,
/// on the same device, and (given `like`, the first batch's shape) the same per-example shape.
pub(crate) fn fetch(
    data: &dyn Examples,
    rows: &[usize],
    like: Option<&[i64]>,
) -> Result<(Tensor, Tensor), AttackError> {
    let (x, y) = data.batch(rows)?;
    crate::attack::check_inputs(&x, &y)?;
    let xs = x.size();
    if xs[0] != rows.len() as i64 {
        return Err(AttackError::BadInput {
            what: "x",
            detail: format!("the source returned {} examples for {} rows", xs[0], rows.len()),
        });
    }
    if let Some(like) = like {
        if xs[1..] != like[1..] {
            return Err(AttackError::BadInput {
                what: "x",
                detail: format!("examples of shape {:?} after examples of shape {:?}", &xs[1..], &like[1..]),
            });
        }
    }
    if y.device() != x.device() {
        return Err(AttackError::BadInput {
            what: "y",
            detail: format!(
                "labels on {:?} but inputs on {:?}; return both on the model's device",
                y.device(),
                x.device()
            ),
        });
    }
    Ok((x, y))
}

/// Calls `f(start, x, y)` for rows `0..len` in order, in batches of `batch_size` rows.
pub(crate) fn for_each_batch(
    data: &dyn Examples,
    batch_size: usize,
    mut f: impl FnMut(usize, &Tensor, &Tensor) -> Result<(), AttackError>,
) -> Result<(), AttackError> {
    if batch_size == 0 {
        return Err(AttackError::BadConfig("batch size must be >= 1".into()));
    }
    let n = data.len();
    let mut like: Option<Vec<i64>> = None;
    let mut start = 0;
    while start < n {
        let end = (start + batch_size).min(n);
        let rows: Vec<usize> = (start..end).collect();
        let (x, y) = fetch(data, &rows, like.as_deref())?;
        if like.is_none() {
            like = Some(x.size());
        }
        f(start, &x, &y)?;
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn tensor_examples_gather_rows_in_order() {
        let x = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([4, 1, 1, 3]);
        let y = Tensor::from_slice(&[5i64, 6, 7, 8]);
        let src = TensorExamples::new(&x, &y);
        assert_eq!(src.len(), 4);
        let (xb, yb) = fetch(&src, &[3, 1], None).unwrap();
        assert_eq!(Vec::<f32>::try_from(&xb.view([-1])).unwrap(), vec![9.0, 10.0, 11.0, 3.0, 4.0, 5.0]);
        assert_eq!(Vec::<i64>::try_from(&yb).unwrap(), vec![8, 6]);
        let mut starts = Vec::new();
        for_each_batch(&src, 3, |s, x, _| {
            starts.push((s, x.size()[0]));
            Ok(())
        })
        .unwrap();
        assert_eq!(starts, vec![(0, 3), (3, 1)]);
    }

    #[test]
    fn a_source_returning_the_wrong_batch_is_refused() {
        let short = FnExamples::new(4, |_rows: &[usize]| {
            Ok((
                Tensor::zeros([1, 1, 2, 2], (Kind::Float, Device::Cpu)),
                Tensor::zeros([1], (Kind::Int64, Device::Cpu)),
            ))
        });
        assert!(matches!(fetch(&short, &[0, 1], None), Err(AttackError::BadInput { what: "x", .. })));
        let reshaped = FnExamples::new(4, |rows: &[usize]| {
            let n = rows.len() as i64;
            Ok((
                Tensor::zeros([n, 1, 2, 2], (Kind::Float, Device::Cpu)),
                Tensor::zeros([n], (Kind::Int64, Device::Cpu)),
            ))
        });
        assert!(fetch(&reshaped, &[0], Some(&[1, 3, 2, 2])).is_err());
        assert!(fetch(&reshaped, &[0], Some(&[7, 1, 2, 2])).is_ok());
    }
}
