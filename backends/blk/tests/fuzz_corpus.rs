//! Replays the fuzz corpus (`fuzz/corpus/ring/`) through the fuzz target's logic: every
//! input the fuzzer kept (and every seed) must keep passing. Also a few generated inputs
//! that exercise each command.
// Casts here are on the tests' own small values.
#![allow(clippy::cast_possible_truncation)]
mod fuzz_model;

use blkback::testing::pattern;
use fuzz_model::fuzz_ring;

#[test]
fn corpus_replays_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ring");
    let mut n = 0;
    let mut verified = 0;
    for e in std::fs::read_dir(&dir).expect("fuzz/corpus/ring exists") {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        let r = fuzz_ring(&data);
        verified += r.verified_reads;
        n += 1;
    }
    assert!(n >= 8, "only {n} corpus files");
    assert!(verified > 0, "no corpus input verified any read against the model");
}

#[test]
fn clean_inputs_verify_reads_in_every_configuration() {
    for cfg in 0u8..64 {
        // Writes then reads of the same places, then a backend run.
        let mut d = vec![cfg];
        // write: cmd, queue, pages-1, offset/512, sector (u16), data seed (u16)
        for i in 0..12u8 {
            d.extend([i % 4, i, 2 + i, i % 8, i.wrapping_mul(40), 0, i, 0]);
        }
        d.extend([15, 0]);
        // read: cmd, queue, pages-1, offset/512, sector (u16)
        for i in 0..12u8 {
            d.extend([4 + i % 4, i, 2 + i, i % 8, i.wrapping_mul(40), 0]);
        }
        d.extend([15, 0]);
        let r = fuzz_ring(&d);
        assert!(r.verified_reads >= 6, "config {cfg:#x}: {r:?}");
    }
}

#[test]
fn random_inputs_hold_the_invariants() {
    for seed in 0..200u64 {
        let len = 64 + (seed as usize * 37) % 3000;
        let _ = fuzz_ring(&pattern(seed, len));
    }
}
