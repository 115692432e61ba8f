//! A store that answers later (as a network store does): the device offers itself at once
//! but connects the frontend only once the store is ready; I/O held by the store when the
//! frontend goes is cancelled, its buffers released before the pages are unmapped, and a
//! late completion reaches nobody.
#![allow(clippy::cast_possible_truncation)]

use std::cell::Cell;
use std::rc::Rc;

use blkback::device::DeviceConfig;
use blkback::store::{BlockStore, Completion, DiskInfo, RamStore, StoreError, StoreIo};
use blkback::testing::*;
use xen_sys_mini::io::blkif::{BLKIF_RSP_ERROR, BLKIF_RSP_OKAY};
use xen_sys_mini::io::xenbus::XenbusState;

type Buf = Rc<FakeMapping>;

/// A RAM store behind a switch: not ready until `ready` is set; I/Os are held until
/// `release` is set.
#[derive(Debug)]
struct SlowStore {
    inner: RamStore<Vec<u8>, Buf>,
    ready: Rc<Cell<bool>>,
    release: Rc<Cell<bool>>,
    held: Vec<StoreIo<Buf>>,
    cancelled: Rc<Cell<usize>>,
}

impl blkback::store::FrameBacked for SlowStore {}
impl blkback::store::ScratchFrames for SlowStore {}

impl BlockStore<Buf> for SlowStore {
    fn info(&self) -> DiskInfo {
        self.inner.info()
    }
    fn submit(&mut self, io: StoreIo<Buf>) -> Result<(), (StoreIo<Buf>, StoreError)> {
        self.held.push(io);
        Ok(())
    }
    fn complete(&mut self, out: &mut Vec<Completion<Buf>>) {
        if self.release.get() {
            for io in self.held.drain(..) {
                let _ = self.inner.submit(io);
            }
        }
        self.inner.complete(out);
    }
    fn ready(&self) -> bool {
        self.ready.get()
    }
    fn cancel(&mut self, out: &mut Vec<StoreIo<Buf>>) {
        self.cancelled.set(self.cancelled.get() + self.held.len());
        out.append(&mut self.held);
    }
}

/// The store and its switches: (ready, release, cancelled count).
type Switches = (Rc<Cell<bool>>, Rc<Cell<bool>>, Rc<Cell<usize>>);

fn slow(size: usize) -> (SlowStore, Switches) {
    let (ready, release, cancelled) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)), Rc::new(Cell::new(0)));
    let s = SlowStore {
        inner: RamStore::new(vec![0u8; size], false),
        ready: ready.clone(),
        release: release.clone(),
        held: Vec::new(),
        cancelled: cancelled.clone(),
    };
    (s, (ready, release, cancelled))
}

#[test]
fn the_frontend_waits_in_initwait_until_the_store_is_ready() {
    let mut h = Harness::new();
    let (store, (ready, release, _)) = slow(1 << 20);
    release.set(true);
    let (mut dev, mut fe) = h.attach_store(5, 51712, store, "w", DeviceConfig::default(), FrontendOpts::default());
    assert_eq!(dev.state(), XenbusState::InitWait, "libxl's 10 s wait for InitWait must end");
    assert!(!h.connect(&mut dev, &mut fe), "connected before the store knew its size");
    assert_eq!(dev.state(), XenbusState::InitWait);
    assert!(h.xs.get(&format!("{}/sectors", fe.be)).is_none());
    assert_eq!(h.g.counters().mapped_now, 0, "rings mapped before the store was ready");
    ready.set(true);
    h.update(&mut dev);
    assert!(fe.connected(&mut h.xs));
    assert_eq!(fe.sectors(&h.xs), 2048);
    let data = pattern(3, 4096);
    fe.rw(&h.xs, &mut h.g, true, 8, 4096, Some(&data), 0);
    let done = h.run(&mut dev, &mut fe);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, BLKIF_RSP_OKAY);
}

#[test]
fn held_io_is_cancelled_and_answered_when_the_frontend_goes() {
    let mut h = Harness::new();
    let (store, (ready, release, cancelled)) = slow(1 << 20);
    ready.set(true);
    let opts = FrontendOpts { persistent: true, ..FrontendOpts::default() };
    let (mut dev, mut fe) = h.attach_store(5, 51712, store, "w", DeviceConfig::default(), opts);
    assert!(h.connect(&mut dev, &mut fe));
    for i in 0..4u64 {
        fe.rw(&h.xs, &mut h.g, i % 2 == 0, i * 64, 8192, Some(&pattern(i, 8192)), 0);
    }
    let done = h.run(&mut dev, &mut fe);
    assert!(done.is_empty(), "the store answered while holding");
    assert_eq!(dev.connection().map(|c| c.in_flight()), Some(4));
    assert!(h.g.counters().mapped_now > 1, "data pages not mapped while in flight");
    // The frontend closes (or its domain dies) with the I/O still in the store.
    fe.set_state(&mut h.xs, XenbusState::Closing);
    h.update(&mut dev);
    assert_eq!(cancelled.get(), 4);
    assert!(dev.connection().is_none());
    let c = h.g.counters();
    assert_eq!((c.mapped_now, c.leaked), (0, 0), "a mapping outlived the connection");
    // Every request was answered (with an error) before the ring went: Linux blkfront
    // keeps handling responses after it wrote Closed, and an unanswered request would
    // hold its bio (and dom0's xenwatch thread) forever.
    let got = fe.complete(&mut h.g);
    assert_eq!(got.len(), 4, "requests left unanswered at disconnect");
    assert!(got.iter().all(|d| d.status == BLKIF_RSP_ERROR), "{:?}", got.iter().map(|d| d.status).collect::<Vec<_>>());
    // The store learns the outcome later: nobody is answered again.
    release.set(true);
    let r = dev.process(&mut h.xs, &mut h.g, &mut h.ev);
    assert_eq!(r.responses, 0);
    assert!(fe.complete(&mut h.g).is_empty());
    assert_eq!(h.g.counters().mapped_now, 0);
}

/// Requests on the ring when the frontend writes Closed (Linux blkfront since 5.19 does so
/// without waiting for them) are served before the ring is unmapped, and answered: none is
/// left holding its bio. Before: they were dropped with the ring.
#[test]
fn requests_on_the_ring_at_close_are_served_and_answered() {
    let mut h = Harness::new();
    let (mut dev, mut fe) = h.attach(5, 51712, 1 << 20, false, DeviceConfig::default(), FrontendOpts::default());
    assert!(h.connect(&mut dev, &mut fe));
    let ids: Vec<u64> = (0..6u64).map(|i| fe.write(&h.xs, &mut h.g, i * 16, &pattern(i, 8192))).collect();
    fe.push();
    // Closed before the backend looked at the ring. First sight: the frontend is notified
    // (to flush what it still has queued) and the connection kept.
    fe.set_state(&mut h.xs, XenbusState::Closed);
    let total = |ev: &FakeEvtchn| ev.notified.values().sum::<u64>();
    let before = total(&h.ev);
    let o = h.update(&mut dev);
    assert!(o.kicked && dev.connection().is_some());
    assert_eq!(total(&h.ev), before + 1, "the closed frontend was not notified");
    // Next look (idle by then, as a device alone always is): dropped, the ring drained first.
    h.update(&mut dev);
    assert!(dev.connection().is_none());
    assert_eq!(h.g.counters().mapped_now, 0);
    let got = fe.complete(&mut h.g);
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), ids, "requests left unanswered");
    assert!(got.iter().all(|d| d.status == BLKIF_RSP_OKAY));
    let disk = dev.store().unwrap().backing();
    for i in 0..6usize {
        assert_eq!(&disk[i * 8192..(i + 1) * 8192], &pattern(i as u64, 8192)[..], "write {i} not on the disk");
    }
}
