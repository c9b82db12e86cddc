//! The process allocator: mimalloc, asked for alignment only when a type
//! needs more than every mimalloc block already has.
//!
//! A proxy allocates and frees many small buffers per request, and
//! mimalloc's thread-local free lists cut that cost. The `mimalloc` crate's
//! allocator sends every allocation through `mi_malloc_aligned`, whose checks
//! and fallbacks cost about 2,000 instructions per proxied request here
//! (`benches/instructions.sh`), although almost every Rust allocation asks
//! for an alignment of 8 or less: strings, vectors of bytes, boxes and `Arc`s
//! of word-sized fields. mimalloc's blocks are multiples of 8 bytes in pages
//! aligned far beyond that, so such a request is served by `mi_malloc`
//! itself; larger alignments keep the aligned entry points.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has, whatever its size: a block's size
/// is a multiple of the machine word.
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

pub struct Allocator;

// SAFETY: every path returns memory from mimalloc with at least the layout's
// size and alignment (an alignment of BLOCK_ALIGN or less holds for every
// block), or null on failure, and frees and grows only memory it returned.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= BLOCK_ALIGN {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= BLOCK_ALIGN {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= BLOCK_ALIGN {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to a few pages at every alignment: the pointer has the
    /// alignment asked for, holds what was written through a grow, and
    /// zeroed memory is zero.
    #[test]
    fn blocks_have_the_alignment_asked_for() {
        let allocator = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in (1..=512).chain([1000, 1024, 1025, 4096, 70_000]) {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = allocator.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xab, size);
                    let grown = allocator.realloc(p, layout, size * 2 + 3);
                    assert_eq!(grown as usize % align, 0, "grown {size} align {align}");
                    assert!((0..size).all(|i| *grown.add(i) == 0xab));
                    allocator.dealloc(grown, Layout::from_size_align(size * 2 + 3, align).unwrap());
                    let z = allocator.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    allocator.dealloc(z, layout);
                }
            }
        }
    }
}
