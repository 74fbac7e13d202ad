//! A counting global allocator for the allocation tests: a thin wrapper over `System` that
//! counts allocations (reallocations included) while a measurement is open, either on the
//! measuring thread only ([`count_allocs`]) or on every thread of the process
//! ([`count_allocs_all_threads`], for a server running in-process; the test binary must then
//! run nothing else meanwhile). Measurements are serialized by a lock.
//!
//! Included with `#[path = "common/counting.rs"] mod counting;` by the test files that need it,
//! not from `common/mod.rs`: it installs the process's global allocator.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::Mutex;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Blocks and bytes (as requested) allocated and not yet freed, by every thread, always.
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALL_THREADS: AtomicBool = AtomicBool::new(false);
static MEASURING: Mutex<()> = Mutex::new(());

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    // `try_with`: the allocator can run while this thread's locals are being torn down.
    if ALL_THREADS.load(Ordering::Relaxed) || ENABLED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting
// touches only atomics and a const-initialized thread-local, none of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        live(1, layout.size() as isize);
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        live(1, layout.size() as isize);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        live(0, new_size as isize - layout.size() as isize);
        // SAFETY: `ptr` and `layout` came from this allocator, which is `System` underneath.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(-1, -(layout.size() as isize));
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn live(blocks: isize, bytes: isize) {
    LIVE_BLOCKS.fetch_add(blocks, Ordering::Relaxed);
    LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// Heap blocks and bytes (as requested, without the allocator's own overhead) in use now, over
/// every thread.
pub fn live_heap() -> (isize, isize) {
    (
        LIVE_BLOCKS.load(Ordering::Relaxed),
        LIVE_BYTES.load(Ordering::Relaxed),
    )
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Run `f` and return how many allocations this thread made meanwhile, with `f`'s result.
pub fn count_allocs<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let _serial = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    ALLOCATIONS.store(0, Ordering::Relaxed);
    ENABLED.with(|e| e.set(true));
    let r = f();
    ENABLED.with(|e| e.set(false));
    (ALLOCATIONS.load(Ordering::Relaxed), r)
}

/// Run `f` and return how many allocations every thread of the process made meanwhile.
pub fn count_allocs_all_threads<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let _serial = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    ALLOCATIONS.store(0, Ordering::Relaxed);
    ALL_THREADS.store(true, Ordering::SeqCst);
    let r = f();
    ALL_THREADS.store(false, Ordering::SeqCst);
    (ALLOCATIONS.load(Ordering::Relaxed), r)
}
