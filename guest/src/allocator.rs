//! The component's allocator: small blocks from free lists, the rest from
//! the standard allocator.
//!
//! A call's values are mostly small and short-lived: every id that crosses
//! the boundary is a 36-byte string allocated for the call (by the host's
//! `cabi_realloc` on the way in, by the guest on the way out) and freed by
//! its end. A block of at most [`LARGEST`] bytes is taken from the free
//! list of its size class, or cut from a chunk, and given back to that list;
//! a pop or a push instead of a general allocator's search. Chunks are never
//! returned: what a list holds is what the busiest call needed, and the
//! host drops an instance whose memory has grown too much.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes are multiples of this; also the blocks' alignment.
const GRAIN: usize = 16;
/// The largest block served from the free lists.
const LARGEST: usize = 512;
const CLASSES: usize = LARGEST / GRAIN;
/// What a chunk holds.
const CHUNK: usize = 16 * 1024;

/// Small blocks by size class, over the standard allocator.
pub struct Allocator {
    state: UnsafeCell<State>,
}

struct State {
    /// Each class's free blocks, linked through their first word.
    free: [*mut u8; CLASSES],
    /// The rest of the current chunk, not yet cut.
    next: *mut u8,
    end: *mut u8,
}

// A component instance runs on one thread, and this allocator is only
// compiled for a component built without threads (see `lib.rs`).
unsafe impl Sync for Allocator {}

impl Allocator {
    /// An allocator with nothing taken yet.
    pub const fn new() -> Allocator {
        Allocator {
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                next: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }
}

impl Default for Allocator {
    fn default() -> Self {
        Allocator::new()
    }
}

/// The size class of `layout`, if the free lists serve it.
fn class(layout: Layout) -> Option<usize> {
    (layout.size() <= LARGEST && layout.align() <= GRAIN)
        .then(|| layout.size().saturating_sub(1) / GRAIN)
}

unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class(layout) else {
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: one thread, and no call below re-enters this allocator
        // while the state is borrowed.
        let state = unsafe { &mut *self.state.get() };
        let block = state.free[class];
        if !block.is_null() {
            state.free[class] = unsafe { block.cast::<*mut u8>().read() };
            return block;
        }
        let size = (class + 1) * GRAIN;
        if (state.end as usize) - (state.next as usize) < size {
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, GRAIN)) };
            if chunk.is_null() {
                return chunk;
            }
            state.next = chunk;
            state.end = unsafe { chunk.add(CHUNK) };
        }
        let block = state.next;
        state.next = unsafe { block.add(size) };
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class(layout).is_none() {
            return unsafe { System.alloc_zeroed(layout) };
        }
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            unsafe { ptr::write_bytes(block, 0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class(layout) else {
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: as in `alloc`.
        let state = unsafe { &mut *self.state.get() };
        unsafe { block.cast::<*mut u8>().write(state.free[class]) };
        state.free[class] = block;
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new)) {
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            (Some(old), Some(class)) if old == class => block,
            _ => {
                let moved = unsafe { self.alloc(new) };
                if !moved.is_null() {
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn small_blocks_are_distinct_aligned_and_reused_by_their_class() {
        let a = Allocator::new();
        unsafe {
            let blocks: Vec<_> = (1..=LARGEST).map(|n| (a.alloc(layout(n, 1)), n)).collect();
            for (block, n) in &blocks {
                assert_eq!(*block as usize % GRAIN, 0);
                ptr::write_bytes(*block, *n as u8, *n);
            }
            // No block overlaps another: each still holds its own bytes.
            for (block, n) in &blocks {
                assert!(
                    std::slice::from_raw_parts(*block, *n)
                        .iter()
                        .all(|b| *b == *n as u8)
                );
            }
            let (freed, n) = blocks[35];
            a.dealloc(freed, layout(n, 1));
            // The next block of that class is the one just freed; another
            // class's is not.
            assert_ne!(a.alloc(layout(10, 1)), freed);
            assert_eq!(a.alloc(layout(40, 8)), freed);
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_classes_and_to_the_standard_allocator() {
        let a = Allocator::new();
        unsafe {
            let mut size = 3;
            let mut block = a.alloc(layout(size, 1));
            ptr::copy_nonoverlapping(b"abc".as_ptr(), block, 3);
            // Live blocks of every size around it, each full of its own
            // byte: growing the block must not write over any of them.
            let neighbours: Vec<_> = (1..=LARGEST)
                .map(|n| {
                    let neighbour = a.alloc(layout(n, 1));
                    ptr::write_bytes(neighbour, n as u8, n);
                    (neighbour, n)
                })
                .collect();
            for new_size in [20, 36, 64, 65, 512, 513, 4000, 5000, 50, 40, 3] {
                block = a.realloc(block, layout(size, 1), new_size);
                assert_eq!(
                    std::slice::from_raw_parts(block, 3),
                    b"abc",
                    "{size} -> {new_size}"
                );
                ptr::write_bytes(block.add(3), 0xee, new_size - 3);
                size = new_size;
            }
            for (neighbour, n) in neighbours {
                let bytes = std::slice::from_raw_parts(neighbour, n);
                assert!(
                    bytes.iter().all(|b| *b == n as u8),
                    "block of {n} overwritten"
                );
            }
            a.dealloc(block, layout(size, 1));
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_even_when_reused() {
        let a = Allocator::new();
        unsafe {
            let block = a.alloc(layout(48, 1));
            ptr::write_bytes(block, 0xff, 48);
            a.dealloc(block, layout(48, 1));
            let zeroed = a.alloc_zeroed(layout(48, 1));
            assert_eq!(zeroed, block);
            assert!(
                std::slice::from_raw_parts(zeroed, 48)
                    .iter()
                    .all(|b| *b == 0)
            );
        }
    }
}
