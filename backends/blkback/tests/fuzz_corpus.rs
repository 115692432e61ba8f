//! Replays the fuzz corpus (`fuzz/corpus/ring/`) through the fuzz target's logic: every
//! input the fuzzer kept (and every seed) must keep passing. Also a few generated inputs
//! that exercise each command.
// Casts here are on the tests' own small values.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
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

/// The commands added for hostile frontends: a garbage indirect request over eight
/// descriptor pages claiming up to 4096 segments, a whole-disk discard (zeroed over many
/// passes, reads after it see zeroes), and a close/reconnect between writes and reads (the
/// data stays, nothing leaks), each held to the per-`process()` work bounds.
#[test]
fn large_discards_reconnects_and_eight_page_garbage_hold_the_invariants() {
    // cfg: persistent (2) and 4096 indirect segments advertised (0x40).
    let mut d = vec![0x42u8];
    // Writes, a run, a close and reconnect, then reads of the same places.
    for i in 0..6u8 {
        d.extend([i % 4, 0, 2 + i, 0, i.wrapping_mul(40), 0, i, 0]);
    }
    d.extend([15, 0, 13, 0]);
    for i in 0..6u8 {
        d.extend([4 + i % 4, 0, 2 + i, 0, i.wrapping_mul(40), 0]);
    }
    d.extend([15, 0]);
    // A whole-disk discard (n = 0xFF), then reads: zeroes.
    d.extend([11, 0, 0, 0, 0xFF, 0, 1, 15, 0]);
    for i in 0..6u8 {
        d.extend([4 + i % 4, 0, 2 + i, 0, i.wrapping_mul(40), 0]);
    }
    d.extend([15, 0]);
    // Last (it ends the model's checking): a garbage indirect request, cmd 10: queue, eight
    // pages of garbage, nseg (u16, 4095), id (u64), op, sector (u16).
    d.extend([10, 0]);
    d.extend((0..8 * 4096).map(|i| (i * 7 + 3) as u8));
    d.extend([0xFF, 0x0F, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
    d.extend([15, 0]);
    let r = fuzz_ring(&d);
    assert!(r.verified_reads >= 12, "{r:?}");
    assert_eq!(r.responses, 20, "6 writes, 6 reads, a discard, 6 reads, the garbage: {r:?}");
}
