//! The `netfront_rx` fuzz target's model (`fuzz/fuzz_targets/netfront_rx.rs` includes
//! this file; `tests/fuzz_corpus.rs` replays the corpus through it): a hostile netback's
//! arbitrary RX responses and forged `rsp_prod` values, mixed with good frames and
//! transmissions. The vif must never panic, never hand out more than a page, and keep
//! delivering good frames unless the ring itself was broken (then it says so).
#![allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects, dead_code)]

use netfront::testing::MockNetback;
use netfront::vif::{Vif, VifConfig, VifError};
use xen_hv::fake::*;

/// One fuzz input: a hostile netback's RX responses, good frames and transmissions.
pub fn netfront_rx(data: &[u8]) {
    let mut xs = FakeXenStore::default();
    let mut g = FakeGrants::new();
    let mut ev = FakeEvtchn::default();
    let mut frames = g.shared_frames();
    let mut nb = MockNetback::attach(&mut xs, BACKEND, 0, "00:16:3e:00:00:07");
    let Ok(cfg) = VifConfig::read(&mut xs, &nb.fe) else { return };
    let mut vif: Vif<FakeShared> = Vif::new(cfg);
    if vif.update(&mut xs, &mut g, &mut ev, &mut frames).is_err() {
        return;
    }
    nb.update(&mut xs, &mut g, &mut ev);
    let mut broken = false;
    for c in data.chunks(8) {
        let b = |i: usize| c.get(i).copied().unwrap_or(0);
        match b(0) % 5 {
            0 => {
                let id = (b(1) & 1 == 1).then_some(u16::from_le_bytes([b(2), b(3)]));
                let _ = nb.raw_rx_response(
                    &mut ev,
                    id,
                    u16::from_le_bytes([b(4), b(5)]) & 0x1fff,
                    u16::from(b(6)) & 0x1f,
                    i16::from_le_bytes([b(7), b(1)]),
                );
            }
            1 => {
                let len = 14 + usize::from(u16::from_le_bytes([b(1), b(2)]) % 1500);
                let _ = nb.to_frontend(&mut g, &mut ev, &vec![b(3); len]);
            }
            2 => {
                let len = 1 + usize::from(u16::from_le_bytes([b(1), b(2)]) % 5000);
                let _ = vif.transmit(&mut ev, &vec![b(3); len]);
                let _ = nb.from_frontend(&mut g, &mut ev);
            }
            3 if b(1) == 0xff => nb.forge_rx_rsp_prod(u32::from_le_bytes([b(2), b(3), b(4), b(5)])),
            _ => {}
        }
        let r = vif.receive(&mut ev, |f| assert!(f.len() <= 4096, "a frame larger than a page"));
        match r {
            Ok(_) => {}
            Err(VifError::Ring(_)) => {
                broken = true;
                break;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    if !broken {
        // The vif still works: good frames get through (the first two may be taken as
        // the tail of a chain or an extra-info slot a hostile response announced).
        let good = vec![0x5a; 100];
        let mut sent = 0;
        for _ in 0..3 {
            if nb.to_frontend(&mut g, &mut ev, &good) {
                sent += 1;
            }
        }
        if sent == 3 {
            let mut got = Vec::new();
            vif.receive(&mut ev, |f| got.push(f.to_vec())).expect("receive after the storm");
            assert!(got.contains(&good), "good frames were lost after hostile responses");
        }
    }
}
