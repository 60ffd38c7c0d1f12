//! A dataset as the source of an evaluation: its first `n` examples read batch by batch (image
//! files decoded per batch) and moved to the device, so neither the host nor the device ever holds
//! the evaluated split as one tensor.
use roli_attacks::{AttackError, Examples};
use roli_data::Dataset;
use tch::{Device, Tensor};

/// The first `n` examples of `ds`, served on `device` (deterministic eval transform).
pub struct DatasetExamples<'a> {
    ds: &'a dyn Dataset,
    n: usize,
    device: Device,
}

impl<'a> DatasetExamples<'a> {
    /// The first `n` examples (all of them when `n` exceeds the dataset).
    pub fn new(ds: &'a dyn Dataset, n: usize, device: Device) -> Self {
        DatasetExamples { ds, n: n.min(ds.len()), device }
    }
}

impl Examples for DatasetExamples<'_> {
    fn len(&self) -> usize {
        self.n
    }

    fn batch(&self, rows: &[usize]) -> Result<(Tensor, Tensor), AttackError> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.n) {
            return Err(AttackError::BadInput { what: "rows", detail: format!("row {bad} of {} examples", self.n) });
        }
        let (x, y) = self
            .ds
            .batch(rows, None)
            .map_err(|e| AttackError::BadInput { what: "data", detail: format!("{}: {e}", self.ds.name()) })?;
        Ok((x.to_device(self.device), y.to_device(self.device)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roli_data::TensorDataset;
    use tch::Kind;

    #[test]
    fn serves_the_first_n_rows_in_order_and_refuses_others() {
        let images = Tensor::arange(5 * 4, (Kind::Float, Device::Cpu)).view([5, 1, 2, 2]) / 20.0;
        let labels = Tensor::arange(5, (Kind::Int64, Device::Cpu));
        let names = (0..5).map(|i| i.to_string()).collect();
        let ds = TensorDataset::new("t", images.shallow_clone(), labels, names).unwrap();
        let src = DatasetExamples::new(&ds, 3, Device::Cpu);
        assert_eq!(src.len(), 3);
        let (x, y) = src.batch(&[2, 0]).unwrap();
        assert_eq!(Vec::<i64>::try_from(&y).unwrap(), vec![2, 0]);
        assert!(x.get(0).equal(&images.get(2)));
        assert!(src.batch(&[3]).unwrap_err().to_string().contains("row 3 of 3"));
        assert_eq!(DatasetExamples::new(&ds, 99, Device::Cpu).len(), 5);
    }
}
