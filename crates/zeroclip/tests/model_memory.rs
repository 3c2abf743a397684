//! `Clip::from_tensors` keeps no second copy of the weights: the heap it holds after building
//! stays near one copy of the tensors it was given (counted by a global allocator wrapper, so
//! the test is one test per binary: other threads' allocations would blur the count).

mod model_common;

use candle_core::{Device, Tensor};
use model_common::fixture;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` with the caller's arguments unchanged; the counter
// is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with this layout, i.e. by `System`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn from_tensors_holds_one_copy_of_the_weights() {
    let loaded = zeroclip::weights::load(&fixture("vit_zip.pt"), &Device::Cpu).unwrap();
    // As f32, the dtype `from_tensors` keeps.
    let tensors: HashMap<String, Tensor> = loaded
        .tensors
        .into_iter()
        .map(|(k, t)| (k, t.to_dtype(candle_core::DType::F32).unwrap()))
        .collect();
    let config = loaded.config;
    let weight_bytes: usize = tensors.values().map(|t| 4 * t.elem_count()).sum();
    let before = LIVE.load(Ordering::Relaxed);
    let model = zeroclip::Clip::from_tensors(tensors, config, &Device::Cpu).unwrap();
    let held = LIVE.load(Ordering::Relaxed) - before + weight_bytes as isize;
    // The layers hold the weights once (the GEMM ones packed, with some padding); a second copy
    // kept alongside would double it.
    assert!(
        held < weight_bytes as isize * 3 / 2,
        "the model holds {held} bytes for {weight_bytes} bytes of weights"
    );
    assert_eq!(model.checksum().unwrap().len(), 64);
}
