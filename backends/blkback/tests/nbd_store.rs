//! The NBD store under the blkback engine, against the in-process NBD server of the `nbd`
//! crate: a Linux-like frontend's I/O (direct and indirect, larger than the server's maximum
//! payload) lands in the server's export byte for byte; flush and discard reach the server
//! as FLUSH and WRITE_ZEROES; server errors reach the guest; a read-only export is a
//! read-only disk; the device connects only once the handshake ended; a frontend that goes
//! with I/O in flight leaves no mapping and no half-sent request.
#![allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use blkback::device::DeviceConfig;
use blkback::store::nbd::NbdStore;
use blkback::store::BlockStore;
use blkback::testing::*;
use nbd::testing::{Server, ServerOpts};
use nbd::wire::*;
use xen_sys_mini::io::blkif::*;
use xen_sys_mini::io::xenbus::XenbusState;

type Store = NbdStore<Pipe, Rc<FakeMapping>>;

fn store(o: ServerOpts, size: usize) -> (Store, Rc<RefCell<Server>>, Rc<Cell<bool>>) {
    let pipe = Pipe::new(o, size);
    let (server, hold) = (pipe.server.clone(), pipe.hold.clone());
    (NbdStore::new(pipe, "disk0", 60_000_000_000), server, hold)
}

fn opts() -> ServerOpts {
    ServerOpts { block: Some((512, 4096, 64 * 1024)), ..ServerOpts::default() }
}

fn attach(h: &mut Harness, mut s: Store, indirect: bool) -> (TestDev, MockFrontend) {
    // Greeting, NBD_OPT_STRUCTURED_REPLY, NBD_OPT_GO: a round trip each.
    for _ in 0..6 {
        s.poll();
    }
    assert!(s.ready(), "handshake did not finish: {:?}", s.failed());
    let fo =
        FrontendOpts { max_segments: if indirect { 256 } else { 11 }, persistent: true, ..FrontendOpts::default() };
    let (mut dev, mut fe) = h.attach_store(5, 51712, s, "w", DeviceConfig::default(), fo);
    assert!(h.connect(&mut dev, &mut fe));
    (dev, fe)
}

type TestDev = blkback::device::Device<FakeMapping, Store>;

#[test]
fn data_lands_in_the_export_and_reads_back() {
    for indirect in [false, true] {
        let mut h = Harness::new();
        let (s, server, _) = store(opts(), 8 << 20);
        let (mut dev, mut fe) = attach(&mut h, s, indirect);
        assert_eq!(fe.sectors(&h.xs), (8 << 20) / 512);
        // A 1 MiB request is 16 NBD commands of the server's 64 KiB maximum.
        let len = if indirect { 1 << 20 } else { 11 * 4096 };
        let data = pattern(9, len);
        fe.rw(&h.xs, &mut h.g, true, 2048, len, Some(&data), 0);
        let done = h.run(&mut dev, &mut fe);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].status, BLKIF_RSP_OKAY);
        assert_eq!(server.borrow().disk[2048 * 512..2048 * 512 + len], data[..], "the export does not hold the write");
        fe.read(&h.xs, &mut h.g, 2048, len);
        let done = h.run(&mut dev, &mut fe);
        assert_eq!(done[0].status, BLKIF_RSP_OKAY);
        assert_eq!(done[0].data, data);
        if indirect {
            assert!(server.borrow().served[&CMD_WRITE] >= 16, "not split at the server's maximum");
        }
    }
}

#[test]
fn the_device_connects_only_after_the_handshake() {
    let mut h = Harness::new();
    let (s, _, hold) = store(opts(), 1 << 20);
    hold.set(true);
    let (mut dev, mut fe) = h.attach_store(5, 51712, s, "w", DeviceConfig::default(), FrontendOpts::default());
    assert_eq!(dev.state(), XenbusState::InitWait);
    assert!(!h.connect(&mut dev, &mut fe));
    hold.set(false);
    for _ in 0..6 {
        dev.store_mut().expect("store").poll();
    }
    assert!(dev.store().is_some_and(BlockStore::ready));
    // The store has negotiated; the next look at the device connects it (the service does
    // that when a store becomes ready).
    h.update(&mut dev);
    assert!(fe.connected(&mut h.xs));
    assert_eq!(fe.sectors(&h.xs), 2048);
}

#[test]
fn flush_and_discard_reach_the_server() {
    let mut h = Harness::new();
    let (s, server, _) = store(opts(), 1 << 20);
    let (mut dev, mut fe) = attach(&mut h, s, false);
    assert_eq!(h.xs.get(&format!("{}/feature-discard", fe.be)), Some("1"));
    fe.write(&h.xs, &mut h.g, 0, &pattern(1, 8192));
    h.run(&mut dev, &mut fe);
    fe.simple(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, false);
    fe.simple(BLKIF_OP_DISCARD, 0, 8, false);
    let done = h.run(&mut dev, &mut fe);
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|d| d.status == BLKIF_RSP_OKAY), "{done:?}");
    let sv = server.borrow();
    assert_eq!(sv.flushes, 1);
    assert_eq!(sv.served.get(&CMD_WRITE_ZEROES), Some(&1));
    assert!(sv.disk[..4096].iter().all(|&b| b == 0), "the discarded range does not read back as zeroes");
    assert_eq!(sv.disk[4096..8192], pattern(1, 8192)[4096..]);
}

#[test]
fn server_errors_reach_the_guest_and_read_only_exports_are_read_only() {
    let mut h = Harness::new();
    let o = ServerOpts { flags: FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH, ..opts() };
    let (s, _, _) = store(o, 1 << 20);
    let (mut dev, mut fe) = attach(&mut h, s, false);
    assert_eq!(h.xs.get(&format!("{}/info", fe.be)), Some(&*VDISK_READONLY.to_string()));
    fe.write(&h.xs, &mut h.g, 0, &pattern(2, 4096));
    let done = h.run(&mut dev, &mut fe);
    assert_eq!(done[0].status, BLKIF_RSP_ERROR, "a write reached a read-only export");
    // The server itself refuses a range the client thinks exists: an error for that
    // request, the device keeps serving.
    let mut h = Harness::new();
    let (s, server, _) = store(opts(), 1 << 20);
    let (mut dev, mut fe) = attach(&mut h, s, false);
    server.borrow_mut().disk.truncate(512 * 1024);
    fe.read(&h.xs, &mut h.g, 1500, 4096);
    fe.read(&h.xs, &mut h.g, 0, 4096);
    let mut done = h.run(&mut dev, &mut fe);
    done.sort_by_key(|d| d.id);
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].status, BLKIF_RSP_ERROR);
    assert_eq!(done[1].status, BLKIF_RSP_OKAY);
    assert_eq!(dev.state(), XenbusState::Connected);
}

#[test]
fn a_frontend_gone_mid_io_leaves_nothing_mapped_and_no_half_request() {
    let mut h = Harness::new();
    let (s, server, hold) = store(opts(), 1 << 20);
    let (mut dev, mut fe) = attach(&mut h, s, true);
    hold.set(true);
    let data = pattern(4, 256 * 1024);
    fe.write(&h.xs, &mut h.g, 0, &data);
    fe.read(&h.xs, &mut h.g, 1024, 8192);
    assert!(h.run(&mut dev, &mut fe).is_empty(), "answered while the server was held");
    assert!(h.g.counters().mapped_now > 1);
    fe.set_state(&mut h.xs, XenbusState::Closing);
    h.update(&mut dev);
    let c = h.g.counters();
    assert_eq!((c.mapped_now, c.leaked), (0, 0), "a mapping outlived the frontend");
    // The server still gets whole requests: the write arrives complete.
    hold.set(false);
    // Drain what is left of the byte stream through the store.
    for _ in 0..400 {
        if let Some(st) = dev.store_mut() {
            st.poll();
        }
    }
    assert_eq!(server.borrow().disk[..data.len()], data[..], "the cancelled write reached the server torn");
}

/// A store whose pipe's switches the test keeps: (closed, server up, clock).
#[allow(clippy::type_complexity)]
fn store_with_switches(
    window_ns: u64,
) -> (Store, Rc<RefCell<Server>>, Rc<Cell<bool>>, [Rc<Cell<bool>>; 2], Rc<Cell<u64>>) {
    let pipe = Pipe::new(opts(), 1 << 20);
    let (server, hold) = (pipe.server.clone(), pipe.hold.clone());
    let (closed, up, clock) = (pipe.closed.clone(), pipe.server_up.clone(), pipe.clock.clone());
    (NbdStore::new(pipe, "disk0", window_ns), server, hold, [closed, up], clock)
}

fn turns(h: &mut Harness, dev: &mut TestDev, fe: &mut MockFrontend, clock: &Rc<Cell<u64>>, ms: u64) -> Vec<Done> {
    fe.push();
    let mut done = Vec::new();
    for _ in 0..ms / 50 {
        clock.set(clock.get() + 50_000_000);
        if let Some(s) = dev.store_mut() {
            s.poll();
        }
        dev.process(&mut h.xs, &mut h.g, &mut h.ev);
        done.extend(fe.complete(&mut h.g));
    }
    done
}

#[test]
fn a_lost_connection_is_made_again_and_the_held_io_replayed() {
    let mut h = Harness::new();
    let (s, server, hold, [closed, _up], clock) = store_with_switches(60_000_000_000);
    let (mut dev, mut fe) = attach(&mut h, s, false);
    hold.set(true);
    let data = pattern(21, 8192);
    fe.rw(&h.xs, &mut h.g, true, 16, 8192, Some(&data), 0);
    assert!(h.run(&mut dev, &mut fe).is_empty());
    // The server restarts: the connection is gone with the write unanswered.
    closed.set(true);
    hold.set(false);
    let done = turns(&mut h, &mut dev, &mut fe, &clock, 2000);
    assert_eq!(done.len(), 1, "the held write was not replayed");
    assert_eq!(done[0].status, BLKIF_RSP_OKAY);
    assert_eq!(server.borrow().disk[16 * 512..16 * 512 + 8192], data[..]);
    let c = dev.store().map(BlockStore::counters).unwrap_or_default();
    assert!(c.contains(&("nbd_reconnects", 1)), "{c:?}");
    assert!(c.contains(&("nbd_replayed", 1)), "{c:?}");
    assert_eq!(dev.state(), XenbusState::Connected);
}

#[test]
fn past_the_window_the_guest_gets_errors_and_the_disk_heals_when_the_server_returns() {
    let mut h = Harness::new();
    let (s, _server, _hold, [closed, up], clock) = store_with_switches(1_000_000_000);
    let (mut dev, mut fe) = attach(&mut h, s, false);
    up.set(false);
    closed.set(true);
    fe.read(&h.xs, &mut h.g, 0, 4096);
    let done = turns(&mut h, &mut dev, &mut fe, &clock, 800);
    assert!(done.is_empty(), "failed before the window ended");
    let done = turns(&mut h, &mut dev, &mut fe, &clock, 800);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, BLKIF_RSP_ERROR, "no error after the window");
    // New I/O fails at once while the server stays away; the device stays connected.
    fe.read(&h.xs, &mut h.g, 0, 4096);
    let done = turns(&mut h, &mut dev, &mut fe, &clock, 100);
    assert_eq!(done.first().map(|d| d.status), Some(BLKIF_RSP_ERROR));
    assert_eq!(dev.state(), XenbusState::Connected);
    // The server comes back: the disk works again without a re-attach.
    up.set(true);
    let _ = turns(&mut h, &mut dev, &mut fe, &clock, 6000);
    fe.read(&h.xs, &mut h.g, 0, 4096);
    let done = turns(&mut h, &mut dev, &mut fe, &clock, 500);
    assert_eq!(done.first().map(|d| d.status), Some(BLKIF_RSP_OKAY), "the disk did not heal");
    let c = dev.store().map(BlockStore::counters).unwrap_or_default();
    assert!(c.contains(&("nbd_timed_out", 1)), "{c:?}");
}
