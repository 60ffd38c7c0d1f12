//! A process group on libtorch's own c10d — the engine `torch.distributed` runs on — over Gloo
//! (CPU tensors), from `cpp/dist.cpp`: a TCP store, then all-reduce, broadcast, all-gather and
//! barrier. [`ProcessGroup::from_env`] reads what `torchrun --no-python` sets (`RANK`,
//! `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`); under torchrun, rank 0's store finds the agent's
//! store on `MASTER_PORT` and libtorch uses it (`TORCHELASTIC_USE_AGENT_STORE`), no special case
//! here. Every wait is bounded by the group's timeout: a rank that dies makes the others' calls
//! fail with an error instead of hanging.
use super::{call, ExtError};
use std::ffi::{c_char, c_int, c_void, CString};
use std::time::Duration;
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn roli_dist_gloo_init(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        out: *mut *mut c_void,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn roli_dist_free(g: *mut c_void);
    fn roli_dist_all_reduce_sum(g: *mut c_void, t: *const C_tensor, err: *mut c_char, len: usize) -> c_int;
    fn roli_dist_broadcast(g: *mut c_void, t: *const C_tensor, root: c_int, err: *mut c_char, len: usize) -> c_int;
    fn roli_dist_all_gather(
        g: *mut c_void,
        t: *const C_tensor,
        out: *const C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn roli_dist_barrier(g: *mut c_void, err: *mut c_char, len: usize) -> c_int;
}

/// Where a process sits in the group, as torchrun describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    pub rank: usize,
    pub world_size: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl Rendezvous {
    /// Reads `RANK`, `WORLD_SIZE`, `MASTER_ADDR` (default `127.0.0.1`) and `MASTER_PORT` from
    /// `get` (the environment in [`ProcessGroup::from_env`]); `None` when `WORLD_SIZE` is unset
    /// (not launched by torchrun). Pure, for testing.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Rendezvous>, ExtError> {
        let bad = |what: String| ExtError::new("dist", what);
        let Some(world) = get("WORLD_SIZE") else { return Ok(None) };
        let num =
            |key: &str, v: String| v.trim().parse::<usize>().map_err(|_| bad(format!("{key}={v} is not a number")));
        let world_size = num("WORLD_SIZE", world)?;
        let rank = num("RANK", get("RANK").ok_or_else(|| bad("WORLD_SIZE is set but RANK is not".into()))?)?;
        if world_size == 0 || rank >= world_size {
            return Err(bad(format!("RANK={rank} must lie in 0..WORLD_SIZE={world_size}")));
        }
        let port = get("MASTER_PORT").ok_or_else(|| bad("MASTER_PORT is not set (torchrun sets it)".into()))?;
        let master_port = port.trim().parse::<u16>().map_err(|_| bad(format!("MASTER_PORT={port} is not a port")))?;
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        Ok(Some(Rendezvous { rank, world_size, master_addr, master_port }))
    }
}

/// A Gloo process group; dropped → left.
pub struct ProcessGroup {
    handle: *mut c_void,
    rank: usize,
    world_size: usize,
}

// The c10d process group is thread-safe (torch.distributed calls it from any thread).
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group `r` describes (rank 0 hosts the store); every wait is bounded by `timeout`.
    pub fn gloo(r: &Rendezvous, timeout: Duration) -> Result<ProcessGroup, ExtError> {
        let host = CString::new(r.master_addr.clone()).map_err(|_| ExtError::new("dist", "MASTER_ADDR holds a NUL"))?;
        let (rank, world) = (r.rank as c_int, r.world_size as c_int);
        let ms = timeout.as_millis().min(i64::MAX as u128) as i64;
        let mut handle: *mut c_void = std::ptr::null_mut();
        call("dist_gloo_init", |e, n| unsafe {
            roli_dist_gloo_init(host.as_ptr(), r.master_port as c_int, rank, world, ms, &mut handle, e, n)
        })?;
        Ok(ProcessGroup { handle, rank: r.rank, world_size: r.world_size })
    }

    /// The group torchrun's environment describes, or `None` outside torchrun.
    pub fn from_env(timeout: Duration) -> Result<Option<ProcessGroup>, ExtError> {
        match Rendezvous::from_vars(|k| std::env::var(k).ok())? {
            Some(r) => Ok(Some(Self::gloo(&r, timeout)?)),
            None => Ok(None),
        }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Sums `t` over the ranks, in place (a CPU tensor).
    pub fn all_reduce_sum(&self, t: &Tensor) -> Result<(), ExtError> {
        call("dist_all_reduce_sum", |e, n| unsafe { roli_dist_all_reduce_sum(self.handle, t.as_ptr(), e, n) })
    }

    /// Every rank's `t` becomes `root`'s, in place.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<(), ExtError> {
        call("dist_broadcast", |e, n| unsafe { roli_dist_broadcast(self.handle, t.as_ptr(), root as c_int, e, n) })
    }

    /// Every rank's `t` stacked in rank order: `[world_size, ...t.shape]`.
    pub fn all_gather(&self, t: &Tensor) -> Result<Tensor, ExtError> {
        let mut shape = vec![self.world_size as i64];
        shape.extend(t.size());
        let out = Tensor::empty(shape.as_slice(), (t.kind(), t.device()));
        let t = t.contiguous();
        call("dist_all_gather", |e, n| unsafe { roli_dist_all_gather(self.handle, t.as_ptr(), out.as_ptr(), e, n) })?;
        Ok(out)
    }

    /// Waits until every rank has reached it.
    pub fn barrier(&self) -> Result<(), ExtError> {
        call("dist_barrier", |e, n| unsafe { roli_dist_barrier(self.handle, e, n) })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        unsafe { roli_dist_free(self.handle) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(kv: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| kv.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn torchrun_variables_are_read_and_checked() {
        assert_eq!(Rendezvous::from_vars(vars(&[])).unwrap(), None, "not under torchrun");
        let r = Rendezvous::from_vars(vars(&[("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_PORT", "29500")]))
            .unwrap()
            .unwrap();
        assert_eq!(r, Rendezvous { rank: 1, world_size: 2, master_addr: "127.0.0.1".into(), master_port: 29500 });
        let e = |kv: &[(&str, &str)]| Rendezvous::from_vars(vars(kv)).unwrap_err().to_string();
        assert!(e(&[("WORLD_SIZE", "2"), ("MASTER_PORT", "1")]).contains("RANK is not"));
        assert!(e(&[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_PORT", "1")]).contains("must lie in 0..WORLD_SIZE=2"));
        assert!(e(&[("WORLD_SIZE", "2"), ("RANK", "0")]).contains("MASTER_PORT is not set"));
        assert!(e(&[("WORLD_SIZE", "two"), ("RANK", "0")]).contains("WORLD_SIZE=two"));
    }
}
