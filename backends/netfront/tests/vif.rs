//! The vif against a mock Linux netback: handshake keys, frames both ways through many ring
//! wraps (data checked byte for byte), TX back-pressure, hostile RX responses (dropped and
//! counted, later frames still delivered), a lying `rsp_prod`, backend restart and close
//! (every grant ended, none reused while mapped).
#![allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)]

use netfront::testing::*;
use netfront::vif::{Vif, VifConfig, VifError, VifStats};
use xen_hv::fake::*;
use xen_sys_mini::io::netif::*;
use xen_sys_mini::io::xenbus::XenbusState;

struct Bed {
    xs: FakeXenStore,
    g: FakeGrants,
    frames: FakeSharedFrames,
    ev: FakeEvtchn,
    nb: MockNetback,
    vif: Vif<FakeShared>,
}

impl Bed {
    fn new() -> Self {
        let mut xs = FakeXenStore::default();
        let nb = MockNetback::attach(&mut xs, BACKEND, 0, "00:16:3e:00:00:01");
        let cfg = VifConfig::read(&mut xs, &nb.fe).expect("config");
        assert_eq!(cfg.mac, [0, 0x16, 0x3e, 0, 0, 1]);
        assert_eq!(cfg.be_dom, NETBACK);
        let g = FakeGrants::new();
        Self { xs, frames: g.shared_frames(), g, ev: FakeEvtchn::default(), nb, vif: Vif::new(cfg) }
    }

    fn step(&mut self) -> Result<(), VifError> {
        let r = self.vif.update(&mut self.xs, &mut self.g, &mut self.ev, &mut self.frames);
        self.nb.update(&mut self.xs, &mut self.g, &mut self.ev);
        r
    }

    fn fe(&self, k: &str) -> Option<&str> {
        self.xs.get(&format!("{}/{k}", self.nb.fe))
    }

    fn rx_all(&mut self) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        self.vif.receive(&mut self.ev, |f| got.push(f.to_vec())).expect("receive");
        got
    }
}

fn frame(seed: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32 * 31 + seed * 7) as u8).collect()
}

#[test]
fn handshake_writes_what_netback_needs() {
    let mut b = Bed::new();
    b.step().unwrap();
    assert_eq!(b.fe("request-rx-copy"), Some("1"));
    assert_eq!(b.fe("feature-rx-notify"), Some("1"));
    assert_eq!(b.fe("feature-no-csum-offload"), Some("1"));
    assert_eq!(b.fe("feature-sg"), Some("0"));
    assert!(b.fe("tx-ring-ref").is_some() && b.fe("rx-ring-ref").is_some() && b.fe("event-channel").is_some());
    assert_eq!(b.fe("state"), Some("4"));
    assert!(b.nb.connected(), "netback did not connect: {:?}", b.nb.disabled);
    assert_eq!(b.vif.state(), XenbusState::Connected);
    // Rings, 64 TX and 256 RX buffers, all granted to dom0.
    assert_eq!(b.g.live_grants(BACKEND), 2 + 64 + 256);
}

#[test]
fn frames_both_ways_through_many_ring_wraps() {
    let mut b = Bed::new();
    b.step().unwrap();
    for round in 0..40u32 {
        // TX: a burst the size of the buffer pool at most.
        let sent: Vec<Vec<u8>> = (0..50).map(|i| frame(round * 100 + i, 60 + (i as usize * 29) % 1455)).collect();
        for f in &sent {
            assert!(b.vif.transmit(&mut b.ev, f).unwrap(), "TX refused with buffers free");
        }
        let got = b.nb.from_frontend(&mut b.g, &mut b.ev);
        assert_eq!(got, sent, "round {round}: TX frames differ");
        // RX: as many as netback can place.
        let incoming: Vec<Vec<u8>> = (0..30).map(|i| frame(round * 1000 + i, 42 + (i as usize * 97) % 1473)).collect();
        for f in &incoming {
            assert!(b.nb.to_frontend(&mut b.g, &mut b.ev, f), "no RX buffer posted");
        }
        assert_eq!(b.rx_all(), incoming, "round {round}: RX frames differ");
    }
    assert!(b.nb.disabled.is_none(), "{:?}", b.nb.disabled);
    // Each round's RX burst woke the frontend: it re-armed rsp_event after consuming (a
    // frontend that does not stops being notified after the first response).
    assert!(b.nb.rx_notifications >= 40, "only {} RX notifications in 40 rounds", b.nb.rx_notifications);
    let s = b.vif.stats;
    assert_eq!((s.tx_packets, s.rx_packets, s.rx_dropped, s.bad_responses, s.tx_errors), (2000, 1200, 0, 0, 0));
    // Buffers are reused, never re-granted.
    assert_eq!(b.g.live_grants(BACKEND), 2 + 64 + 256);
    assert_eq!(b.g.counters().mapped_now, 2, "netback leaked buffer mappings");
}

#[test]
fn tx_back_pressure() {
    let mut b = Bed::new();
    b.step().unwrap();
    for i in 0..64 {
        assert!(b.vif.transmit(&mut b.ev, &frame(i, 100)).unwrap());
    }
    assert!(!b.vif.can_transmit(), "a free buffer reported with all 64 in flight");
    assert!(!b.vif.transmit(&mut b.ev, &frame(99, 100)).unwrap(), "a 65th frame without a free buffer");
    assert_eq!(b.vif.stats.tx_full, 1);
    assert_eq!(b.nb.from_frontend(&mut b.g, &mut b.ev).len(), 64);
    assert!(b.vif.can_transmit(), "buffers the backend answered are not free again");
    assert!(b.vif.transmit(&mut b.ev, &frame(100, 100)).unwrap(), "buffers not reclaimed");
    // A frame larger than a page is refused, not split across pages.
    assert!(!b.vif.transmit(&mut b.ev, &vec![0u8; 4097]).unwrap());
    assert!(b.nb.disabled.is_none());
}

#[test]
fn hostile_rx_responses_are_dropped_and_counted() {
    let mut b = Bed::new();
    b.step().unwrap();
    // Wrong id, error status, zero length, past the page, a chain, extra info (and the extra
    // slot that follows it).
    assert!(b.nb.raw_rx_response(&mut b.ev, Some(200), 0, 0, 60));
    assert!(b.nb.raw_rx_response(&mut b.ev, None, 0, 0, NETIF_RSP_ERROR));
    assert!(b.nb.raw_rx_response(&mut b.ev, None, 0, 0, 0));
    assert!(b.nb.raw_rx_response(&mut b.ev, None, 4000, 0, 200));
    assert!(b.nb.raw_rx_response(&mut b.ev, None, 0, NETRXF_MORE_DATA, 1000));
    assert!(b.nb.raw_rx_response(&mut b.ev, None, 0, 0, 500)); // the chain's tail: dropped too
    assert!(b.nb.raw_rx_response(&mut b.ev, None, 0, NETRXF_EXTRA_INFO, 100));
    assert!(b.nb.raw_rx_response(&mut b.ev, None, 0, 0, 0)); // the extra-info slot
    let good = frame(1, 1000);
    assert!(b.nb.to_frontend(&mut b.g, &mut b.ev, &good));
    assert_eq!(b.rx_all(), vec![good]);
    let s: VifStats = b.vif.stats;
    assert_eq!((s.bad_responses, s.rx_dropped, s.rx_packets), (2, 6, 1));
    // Every buffer was posted again: the ring still has 256 outstanding requests and
    // netback can fill them all.
    for i in 0..256 {
        assert!(b.nb.to_frontend(&mut b.g, &mut b.ev, &frame(i, 64)), "buffer {i} not reposted");
    }
    assert_eq!(b.rx_all().len(), 256);
}

#[test]
fn a_lying_rsp_prod_is_a_ring_error() {
    let mut b = Bed::new();
    b.step().unwrap();
    b.nb.forge_rx_rsp_prod(300);
    assert!(matches!(b.vif.receive(&mut b.ev, |_| {}), Err(VifError::Ring(_))));
}

#[test]
fn backend_restart_reconnects_and_close_ends_every_grant() {
    let mut b = Bed::new();
    b.step().unwrap();
    b.nb.restart(&mut b.xs, &mut b.g, &mut b.ev);
    b.step().unwrap();
    assert_eq!(b.vif.stats.connects, 2);
    assert!(b.nb.connected());
    // The old connection's grants are gone; only the new one's remain.
    assert_eq!(b.g.live_grants(BACKEND), 2 + 64 + 256);
    let f = frame(5, 900);
    assert!(b.vif.transmit(&mut b.ev, &f).unwrap());
    assert_eq!(b.nb.from_frontend(&mut b.g, &mut b.ev), vec![f]);
    // The backend closes while it still maps the rings: those grants cannot end yet.
    b.nb.close(&mut b.xs);
    b.step().unwrap();
    assert_eq!(b.vif.state(), XenbusState::Closed);
    assert!(!b.vif.connected());
    assert_eq!(b.vif.zombies(), 2, "ring pages ended while netback maps them");
    assert_eq!(b.g.live_grants(BACKEND), 2);
    b.nb.unmap(&mut b.g, &mut b.ev);
    b.step().unwrap();
    assert_eq!(b.vif.zombies(), 0);
    assert_eq!(b.g.live_grants(BACKEND), 0);
}

#[test]
fn a_backend_without_rx_copy_is_refused() {
    let mut xs = FakeXenStore::default();
    let mut nb = MockNetback::attach(&mut xs, BACKEND, 0, "00:16:3e:00:00:02");
    nb.offer_rx_copy = false;
    xs.set(&format!("{}/feature-rx-copy", nb.be), "0");
    let cfg = VifConfig::read(&mut xs, &nb.fe).unwrap();
    let mut vif: Vif<FakeShared> = Vif::new(cfg);
    let mut g = FakeGrants::new();
    let mut frames = g.shared_frames();
    let r = vif.update(&mut xs, &mut g, &mut FakeEvtchn::default(), &mut frames);
    assert_eq!(r, Err(VifError::NoRxCopy));
    assert_eq!(g.live_grants(BACKEND), 0);
}

#[test]
fn bad_toolstack_keys() {
    let mut xs = FakeXenStore::default();
    let nb = MockNetback::attach(&mut xs, BACKEND, 0, "00:16:3e:00:00:03");
    xs.set(&format!("{}/mac", nb.fe), "00:16:3e");
    assert!(matches!(VifConfig::read(&mut xs, &nb.fe), Err(VifError::Config(_))));
    xs.set(&format!("{}/mac", nb.fe), "00:16:3e:00:00:03");
    xs.set(&format!("{}/backend", nb.fe), "/local/domain/7/backend/vif/1/0");
    assert!(matches!(VifConfig::read(&mut xs, &nb.fe), Err(VifError::Config(_))));
}
