//! The allocator plugins run with: a region whose blocks all die with the call that made them.
//!
//! A plugin call allocates a few dozen small blocks — the request's strings and lists (the host
//! writes them through `cabi_realloc`), the plugin's own strings, the answer — and all of them
//! are freed by the time the host has read the answer (the export's post-return function). A
//! general allocator (dlmalloc, Rust's default on `wasm32-unknown-unknown`) spends about half
//! of such a call's instructions on bookkeeping for blocks that live microseconds. Here a block
//! is carved from one region by bumping an offset; freeing the newest block steps the offset
//! back, and once no block of the region is live the whole region is free again, ready for the
//! next call.
//!
//! Nothing fails here that would not fail without it: a block that does not fit in the region
//! comes from the backing allocator, and so does every block once a long-lived one (a static
//! built during a call) keeps the region from emptying. Blocks meant to outlive the call should
//! be made inside [`persistent`], which sends them to the backing allocator directly.
//!
//! On by default (the `call-arena` feature) for `wasm32` builds; native builds (unit tests of a
//! plugin) keep the system allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

/// The region's size. A call that needs more (raw samples rather than weekly aggregates) takes
/// the rest from the backing allocator.
pub const REGION_BYTES: usize = 1 << 20;

/// A bump region in front of a backing allocator. Single-threaded: `wasm32-unknown-unknown`
/// has one thread, and native code uses it only as a value, never as the global allocator.
pub struct CallArena<A> {
    backing: A,
    region_bytes: usize,
    /// Start of the region; null until the first allocation reserves it.
    base: Cell<*mut u8>,
    /// The region could not be reserved: everything goes to the backing allocator.
    unavailable: Cell<bool>,
    /// Bytes of the region in use, from its start.
    used: Cell<usize>,
    /// Blocks of the region not yet freed.
    live: Cell<usize>,
    /// Inside [`persistent`]: blocks go to the backing allocator.
    bypass: Cell<bool>,
}

impl<A> CallArena<A> {
    /// An arena of `region_bytes` in front of `backing`; nothing is reserved until first use.
    pub const fn new(backing: A, region_bytes: usize) -> Self {
        Self {
            backing,
            region_bytes,
            base: Cell::new(core::ptr::null_mut()),
            unavailable: Cell::new(false),
            used: Cell::new(0),
            live: Cell::new(0),
            bypass: Cell::new(false),
        }
    }

    /// Blocks of the region still live (tests and diagnostics).
    pub fn live_blocks(&self) -> usize {
        self.live.get()
    }

    /// Bytes of the region in use (tests and diagnostics).
    pub fn used_bytes(&self) -> usize {
        self.used.get()
    }

    /// Runs `f` with its allocations sent to the backing allocator, so that what it builds to
    /// keep does not hold the region.
    pub fn outside<T>(&self, f: impl FnOnce() -> T) -> T {
        let before = self.bypass.replace(true);
        let value = f();
        self.bypass.set(before);
        value
    }

    fn offset_of(&self, ptr: *mut u8) -> Option<usize> {
        let base = self.base.get();
        if base.is_null() {
            return None;
        }
        let offset = (ptr as usize).wrapping_sub(base as usize);
        (offset < self.region_bytes).then_some(offset)
    }
}

impl<A: GlobalAlloc> CallArena<A> {
    fn region(&self) -> Option<*mut u8> {
        let base = self.base.get();
        if !base.is_null() {
            return Some(base);
        }
        if self.unavailable.get() {
            return None;
        }
        let layout = Layout::from_size_align(self.region_bytes, 16).ok()?;
        // SAFETY: the layout has a non-zero size (REGION_BYTES, or a test's size > 0).
        #[allow(unsafe_code)]
        let base = unsafe { self.backing.alloc(layout) };
        if base.is_null() {
            self.unavailable.set(true);
            return None;
        }
        self.base.set(base);
        Some(base)
    }

    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        if self.bypass.get() {
            return None;
        }
        let base = self.region()?;
        // Align the address, not the offset: the region is only 16-aligned.
        let at = (base as usize).checked_add(self.used.get())?;
        let aligned = at.checked_add(layout.align() - 1)? & !(layout.align() - 1);
        let start = aligned - base as usize;
        let end = start.checked_add(layout.size())?;
        if end > self.region_bytes {
            return None;
        }
        self.used.set(end);
        self.live.set(self.live.get() + 1);
        Some(base.wrapping_add(start))
    }
}

// SAFETY: blocks from the region are disjoint (the offset only moves back over the newest
// block once it is freed, or to the start once no block is live), aligned as asked, and never
// handed out twice while live; every other block comes from, and returns to, `backing`.
#[allow(unsafe_code)]
unsafe impl<A: GlobalAlloc> GlobalAlloc for CallArena<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's layout contract passes through.
            None => unsafe { self.backing.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(offset) = self.offset_of(ptr) else {
            // SAFETY: not in the region, so `backing` allocated it.
            return unsafe { self.backing.dealloc(ptr, layout) };
        };
        let live = self.live.get().saturating_sub(1);
        self.live.set(live);
        if live == 0 {
            self.used.set(0);
        } else if offset + layout.size() == self.used.get() {
            self.used.set(offset);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if let Some(offset) = self.offset_of(ptr) {
            let newest = offset + layout.size() == self.used.get();
            if newest && offset + new_size <= self.region_bytes {
                self.used.set(offset + new_size);
                return ptr;
            }
            if new_size <= layout.size() {
                return ptr;
            }
        }
        // SAFETY: `new_size` is non-zero and, rounded to the alignment, does not overflow
        // (the caller's contract for `realloc`).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for `alloc`; the copy covers the smaller of two live blocks that do not
        // overlap (the new one was just handed out), and `ptr` is freed once, with its layout.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(all(target_arch = "wasm32", feature = "call-arena"))]
mod global {
    use super::{CallArena, REGION_BYTES};

    /// Wrapper making the arena usable as a `static`.
    pub(super) struct Global(pub(super) CallArena<std::alloc::System>);

    // SAFETY: wasm32-unknown-unknown runs one thread; nothing else can reach the cells.
    #[allow(unsafe_code)]
    unsafe impl Sync for Global {}

    // SAFETY: forwards to the arena, which upholds `GlobalAlloc`'s contract.
    #[allow(unsafe_code)]
    unsafe impl core::alloc::GlobalAlloc for Global {
        unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
            unsafe { self.0.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
            unsafe { self.0.dealloc(ptr, layout) }
        }
        unsafe fn realloc(
            &self,
            ptr: *mut u8,
            layout: core::alloc::Layout,
            new_size: usize,
        ) -> *mut u8 {
            unsafe { self.0.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    pub(super) static ALLOCATOR: Global = Global(CallArena::new(std::alloc::System, REGION_BYTES));
}

/// Runs `f` with its allocations made to outlive the call (a static built on first use), so
/// they do not keep the call region from emptying. Outside a plugin build it just runs `f`.
pub fn persistent<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(all(target_arch = "wasm32", feature = "call-arena"))]
    {
        global::ALLOCATOR.0.outside(f)
    }
    #[cfg(not(all(target_arch = "wasm32", feature = "call-arena")))]
    {
        f()
    }
}

#[cfg(test)]
#[allow(unsafe_code, clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::alloc::System;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    fn arena(bytes: usize) -> CallArena<System> {
        CallArena::new(System, bytes)
    }

    #[test]
    fn a_call_that_frees_everything_leaves_the_region_empty() {
        let arena = arena(4096);
        unsafe {
            let a = arena.alloc(layout(10, 1));
            let b = arena.alloc(layout(64, 8));
            let c = arena.alloc(layout(3, 1));
            assert!(arena.offset_of(a).is_some() && arena.offset_of(b).is_some());
            assert_eq!(b as usize % 8, 0);
            assert_eq!(arena.live_blocks(), 3);
            // Out of order, as a call's post-return frees them.
            arena.dealloc(a, layout(10, 1));
            arena.dealloc(c, layout(3, 1));
            assert_ne!(arena.used_bytes(), 0, "b still holds the region");
            arena.dealloc(b, layout(64, 8));
            assert_eq!((arena.live_blocks(), arena.used_bytes()), (0, 0));
            // The next call starts at the same place.
            let again = arena.alloc(layout(10, 1));
            assert_eq!(again, a);
            arena.dealloc(again, layout(10, 1));
        }
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_keep_their_contents() {
        let arena = arena(4096);
        unsafe {
            let mut blocks = Vec::new();
            for (i, align) in [1, 2, 4, 8, 16, 32, 64].into_iter().enumerate() {
                let l = layout(5 + i, align);
                let p = arena.alloc(l);
                assert_eq!(p as usize % align, 0);
                core::ptr::write_bytes(p, i as u8, l.size());
                blocks.push((p, l));
            }
            for (i, (p, l)) in blocks.iter().enumerate() {
                let bytes = core::slice::from_raw_parts(*p, l.size());
                assert!(bytes.iter().all(|b| *b == i as u8), "block {i} overwritten");
            }
            for (p, l) in blocks {
                arena.dealloc(p, l);
            }
            assert_eq!(arena.live_blocks(), 0);
        }
    }

    #[test]
    fn what_does_not_fit_comes_from_the_backing_allocator() {
        let arena = arena(128);
        unsafe {
            let small = arena.alloc(layout(100, 1));
            let big = arena.alloc(layout(100, 1));
            assert!(arena.offset_of(small).is_some());
            assert!(arena.offset_of(big).is_none(), "past the region");
            core::ptr::write_bytes(big, 7, 100);
            arena.dealloc(big, layout(100, 1));
            assert_eq!(arena.live_blocks(), 1, "the backing block is not counted");
            arena.dealloc(small, layout(100, 1));
            assert_eq!(arena.live_blocks(), 0);
        }
    }

    #[test]
    fn the_newest_block_grows_in_place_and_others_move_with_their_bytes() {
        let arena = arena(4096);
        unsafe {
            let old = arena.alloc(layout(4, 1));
            core::ptr::copy_nonoverlapping(b"abcd".as_ptr(), old, 4);
            let grown = arena.realloc(old, layout(4, 1), 100);
            assert_eq!(grown, old, "the newest block grows where it is");
            let other = arena.alloc(layout(8, 1));
            let moved = arena.realloc(grown, layout(100, 1), 200);
            assert_ne!(moved, grown, "a block with one after it moves");
            assert_eq!(core::slice::from_raw_parts(moved, 4), b"abcd");
            assert_eq!(arena.live_blocks(), 2);
            // Past the region: it moves to the backing allocator, bytes and all.
            let far = arena.realloc(moved, layout(200, 1), 8192);
            assert!(arena.offset_of(far).is_none());
            assert_eq!(core::slice::from_raw_parts(far, 4), b"abcd");
            arena.dealloc(far, layout(8192, 1));
            arena.dealloc(other, layout(8, 1));
            assert_eq!((arena.live_blocks(), arena.used_bytes()), (0, 0));
        }
    }

    #[test]
    fn blocks_made_outside_leave_the_region_free_to_reset() {
        let arena = arena(4096);
        unsafe {
            let kept = arena.outside(|| arena.alloc(layout(32, 8)));
            assert!(arena.offset_of(kept).is_none());
            let call = arena.alloc(layout(32, 8));
            arena.dealloc(call, layout(32, 8));
            assert_eq!(
                arena.used_bytes(),
                0,
                "the kept block does not hold the region"
            );
            arena.dealloc(kept, layout(32, 8));
        }
    }

    #[test]
    fn a_block_that_lives_on_only_stops_the_reset() {
        let arena = arena(256);
        unsafe {
            let leaked = arena.alloc(layout(16, 1));
            // Calls go on: the region fills, then the backing allocator serves them.
            for _ in 0..100 {
                let p = arena.alloc(layout(16, 1));
                assert!(!p.is_null());
                core::ptr::write_bytes(p, 1, 16);
                let q = arena.alloc(layout(16, 1));
                arena.dealloc(p, layout(16, 1));
                arena.dealloc(q, layout(16, 1));
            }
            assert_eq!(arena.live_blocks(), 1);
            arena.dealloc(leaked, layout(16, 1));
            assert_eq!(arena.used_bytes(), 0);
        }
    }
}
