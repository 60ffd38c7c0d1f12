//! A capped global allocator for fuzz test binaries: the check behind "no allocation driven by
//! an untrusted size". Fuzz inputs are at most 64 KiB, so any single allocation above
//! [`CAP_BYTES`] while a case runs means a parser trusted a size field. The allocation is refused
//! (null → the process aborts) after printing the parser and case index that reproduce it; a
//! panic is not possible here (an allocator must not unwind).
//!
//! Only Rust allocations are seen: libtorch allocates through its own C++ allocator, so sizes
//! that reach `Tensor` constructors are checked explicitly in the parsers (and by the unit tests
//! claiming 10¹² elements).
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::io::Write as _;

/// The largest single allocation a fuzz case may make.
pub const CAP_BYTES: usize = 64 << 20;

thread_local! {
    /// The (parser, case index) this thread is running; `None` outside a case (set-up is free).
    static CURRENT: Cell<Option<(&'static str, u64)>> = const { Cell::new(None) };
}

/// Marks the current thread as running `case` of `parser` (`None`: not in a case).
pub(crate) fn set_current(case: Option<(&'static str, u64)>) {
    CURRENT.with(|c| c.set(case));
}

/// Install in a fuzz test binary: `#[global_allocator] static A: roli_fuzz::CapAlloc = roli_fuzz::CapAlloc;`
pub struct CapAlloc;

impl CapAlloc {
    /// Whether an allocation of `size` bytes is refused on this thread now.
    fn refuse(size: usize) -> bool {
        if size <= CAP_BYTES {
            return false;
        }
        let Some((parser, index)) = CURRENT.try_with(|c| c.get()).ok().flatten() else { return false };
        let mut msg = StackText::default();
        let _ = write!(
            msg,
            "\nroli-fuzz: {parser} case {index} asked for one allocation of {size} bytes (cap {CAP_BYTES}): a size from the input was trusted; reproduce with ROLI_FUZZ_CASE={index}\n"
        );
        let _ = std::io::stderr().write_all(msg.as_bytes());
        true
    }
}

// SAFETY: every method forwards to `System` unchanged, or returns null (allowed: allocation failure).
unsafe impl GlobalAlloc for CapAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::refuse(new_size) {
            return std::ptr::null_mut();
        }
        System.realloc(ptr, layout, new_size)
    }
}

/// A fixed buffer for formatting inside the allocator (formatting into a `String` would allocate).
struct StackText {
    buf: [u8; 320],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText { buf: [0; 320], len: 0 }
    }
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_only_large_allocations_inside_a_case() {
        assert!(!CapAlloc::refuse(CAP_BYTES + 1), "outside a case nothing is refused");
        set_current(Some(("unit", 0)));
        let (small, large) = (CapAlloc::refuse(1024), CapAlloc::refuse(CAP_BYTES + 1));
        set_current(None);
        assert!(!small && large);
    }
}
