//! The process's allocator: mimalloc, called the way its plain API is fastest.
//!
//! Why not the `mimalloc` crate's `MiMalloc`: it sends every allocation through
//! `mi_malloc_aligned`, whatever the alignment. mimalloc 3 serves an aligned request on its
//! fast path only when a free block of the size class happens to be aligned, and only for
//! sizes up to 1 KiB; everything else goes to its generic aligned path, which over-allocates
//! (size + alignment − 1) unless the size class is a power of two (`alloc-aligned.c`). Rust
//! asks for an alignment of 1 or 8 nearly every time, which any mimalloc block satisfies: block
//! sizes are whole words and a page's first block is 16-aligned. callgrind at fan-out 10 put
//! `mi_malloc_aligned` at 5.9 % of Herald's instructions, 88,597 of its 537,665 calls on the
//! over-allocating path (hyper's 8 KiB read buffers, fjall's memtable entries). The `mimalloc`
//! crate has the same change proposed upstream (purpleprotocol/mimalloc_rust#170, open).
//!
//! So: an alignment up to a word takes `mi_malloc` / `mi_zalloc` / `mi_realloc`; a larger one
//! keeps the aligned calls. The word bound holds with mimalloc's padding too (its `secure` and
//! `debug` builds add 8 bytes to each block, which keeps blocks whole words but not 16-byte
//! multiples), so no feature of `libmimalloc-sys` can make this hand out misaligned memory.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Every mimalloc block starts at a multiple of this.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc as the global allocator (`#[global_allocator]` in `main.rs`).
pub struct Mimalloc;

/// Whether a request of this alignment can take the plain, unaligned calls.
#[inline]
fn plain(align: usize) -> bool {
    align <= WORD
}

// SAFETY: every method forwards to mimalloc, which returns blocks of at least the requested
// size (or null) aligned to at least a word, and to the requested alignment through its
// aligned calls; `dealloc` and `realloc` get pointers this allocator returned, which
// `mi_free` and `mi_realloc*` accept whichever call made them.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls; mimalloc handles any size.
        unsafe {
            if plain(layout.align()) {
                mi::mi_malloc(layout.size()) as *mut u8
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain(layout.align()) {
                mi::mi_zalloc(layout.size()) as *mut u8
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract).
        unsafe {
            if plain(layout.align()) {
                mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates, writes, reallocates and frees every alignment from 1 to 4 KiB at sizes
    /// around mimalloc's size classes, and checks each pointer's alignment and contents.
    #[test]
    fn every_alignment_is_honoured_through_alloc_zeroed_and_realloc() {
        let a = Mimalloc;
        let sizes = [
            1usize, 3, 7, 8, 12, 20, 24, 40, 48, 100, 600, 1025, 4000, 8192, 70_000,
        ];
        for shift in 0..=12 {
            let align = 1usize << shift;
            for &size in &sizes {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes, valid layouts; each block is freed once, with the
                // layout it was made with.
                unsafe {
                    for zeroed in [false, true] {
                        let p = if zeroed {
                            a.alloc_zeroed(layout)
                        } else {
                            a.alloc(layout)
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        if zeroed {
                            assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                        }
                        p.write_bytes(0xa5, size);
                        let grown = size * 3 + 5;
                        let q = a.realloc(p, layout, grown);
                        assert!(!q.is_null());
                        assert_eq!(
                            q as usize % align,
                            0,
                            "realloc {size}→{grown} align {align}"
                        );
                        assert!(
                            std::slice::from_raw_parts(q, size)
                                .iter()
                                .all(|&b| b == 0xa5)
                        );
                        a.dealloc(q, Layout::from_size_align(grown, align).unwrap());
                    }
                }
            }
        }
    }

    #[test]
    fn only_word_alignments_take_the_plain_calls() {
        assert!(plain(1) && plain(2) && plain(4) && plain(8));
        assert!(!plain(16) && !plain(64) && !plain(4096));
    }
}
