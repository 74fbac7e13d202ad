//! The binary's global allocator: the system allocator, counting the bytes it has handed out
//! and not taken back, so the memory high-water mark ([`stompbox::memory`]) sees heap in use
//! the moment messages are freed (the resident set falls much later, if at all).
//!
//! Each allocation's size goes to one of 64 counters picked per thread, so threads do not
//! contend on one cache line: one relaxed atomic add per allocation and per free (the hot
//! paths allocate nothing anyway).
//!
//! The only `unsafe` in the program: a `GlobalAlloc` impl cannot be written without it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

const SHARDS: usize = 64;

#[repr(align(128))]
struct Shard(AtomicIsize);

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: Shard = Shard(AtomicIsize::new(0));
static COUNTS: [Shard; SHARDS] = [ZERO; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn count(delta: isize) {
    let i = MY_SHARD
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
                s.set(i);
            }
            i
        })
        .unwrap_or(0);
    if let Some(c) = COUNTS.get(i) {
        c.0.fetch_add(delta, Ordering::Relaxed);
    }
}

/// Heap bytes in use.
pub fn allocated() -> usize {
    let sum: isize = COUNTS.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
    sum.max(0) as usize
}

pub struct CountingAlloc;

// SAFETY: every call goes to `System` unchanged, with the caller's guarantees; the counting
// touches only atomics and a const-initialised thread-local without a destructor, so it
// neither allocates nor re-enters the allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: see the impl.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}
