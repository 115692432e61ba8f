//! Arbitrary bytes into the ring, the requests and the indirect pages of a mock frontend,
//! through the whole engine (`blkback::testing::fuzz_ring` holds the logic and the
//! invariants; the corpus is replayed by `backends/blk/tests/fuzz_corpus.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = blkback::testing::fuzz_ring(data);
});
