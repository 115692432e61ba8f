//! Arbitrary bytes into the ring, the requests and the indirect pages of a mock frontend,
//! through the whole engine. The model and its invariants are in
//! `backends/blkback/tests/fuzz_model/` (shared with the corpus replay that `cargo test` runs).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../backends/blkback/tests/fuzz_model/mod.rs"]
mod fuzz_model;

fuzz_target!(|data: &[u8]| {
    let _ = fuzz_model::fuzz_ring(data);
});
