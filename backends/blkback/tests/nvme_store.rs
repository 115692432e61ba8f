//! The NVMe store under the blkback engine, against the `nvme` crate's mock controller: a
//! Linux-like frontend's I/O (direct and indirect, one page to 1 MiB) is DMA'd by the device
//! straight into and out of the frontend's grant-mapped pages (the CPU moves no byte),
//! flush and discard reach the device as Flush and Dataset Management, a 4 KiB-block
//! namespace keeps 512-byte sectors, a device error reaches the guest as an error, and a
//! hung controller gives the guest errors after its timeout, never a hang; the driver keeps
//! every rule of the NVMe spec the mock checks.
#![allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use blkback::device::DeviceConfig;
use blkback::store::nvme::{NvmeDevice, NvmeStore};
use blkback::store::BlockStore;
use blkback::testing::*;
use nvme::testing::{Bus, MockController, MockNs};
use xen_sys_mini::io::blkif::*;

thread_local! {
    static NOW: Cell<u64> = const { Cell::new(1_000_000_000) };
}

fn now() -> u64 {
    NOW.with(Cell::get)
}

fn advance(ns: u64) {
    NOW.with(|c| c.set(c.get() + ns));
}

type Dev = NvmeDevice<Rc<RefCell<MockController>>, Bus>;
type Store = NvmeStore<Rc<RefCell<MockController>>, Bus, Rc<FakeMapping>>;
type TestDev = blkback::device::Device<FakeMapping, Store>;

/// A controller with `setup` applied, brought up; a store on namespace `nsid`.
fn device(setup: impl FnOnce(&mut MockController)) -> (Rc<RefCell<Dev>>, Rc<RefCell<MockController>>, Bus) {
    let bus = Bus::new();
    let mut m = MockController::new(&bus, 16384);
    setup(&mut m);
    let mock = Rc::new(RefCell::new(m));
    let dev = NvmeDevice::new(mock.clone(), bus.clone(), now);
    for _ in 0..100 {
        dev.borrow_mut().poll();
        advance(1_000_000);
    }
    assert_eq!(dev.borrow().controller().state(), nvme::State::Ready);
    (dev, mock, bus)
}

fn store(dev: &Rc<RefCell<Dev>>, bus: &Bus, nsid: u32) -> Store {
    // The IOMMU's view: a grant mapping is reachable at an address of its own.
    let bus = bus.clone();
    NvmeStore::new(dev.clone(), nsid, false, Box::new(move |m: &Rc<FakeMapping>| Some(bus.map(m.mem()))))
}

fn attach(h: &mut Harness, s: Store, indirect: bool, persistent: bool) -> (TestDev, MockFrontend) {
    assert!(s.ready());
    let fo = FrontendOpts { max_segments: if indirect { 256 } else { 11 }, persistent, ..FrontendOpts::default() };
    let (mut dev, mut fe) = h.attach_store(5, 51712, s, "w", DeviceConfig::default(), fo);
    assert!(h.connect(&mut dev, &mut fe));
    (dev, fe)
}

fn clean(mock: &Rc<RefCell<MockController>>) {
    let v = &mock.borrow().violations;
    assert!(v.is_empty(), "the driver broke the NVMe spec: {v:?}");
}

#[test]
fn data_is_dmad_straight_into_the_frontends_pages() {
    for (indirect, persistent) in [(false, false), (true, false), (true, true)] {
        let (dev, mock, bus) = device(|_| {});
        let mut h = Harness::new();
        let (mut d, mut fe) = attach(&mut h, store(&dev, &bus, 1), indirect, persistent);
        assert_eq!(fe.sectors(&h.xs), 16384);
        for (i, len) in [4096usize, 11 * 4096, 64 * 1024, 1 << 20].into_iter().enumerate() {
            if !indirect && len > 11 * 4096 {
                continue;
            }
            let sector = 64 * i as u64;
            let data = pattern(i as u64 + 7, len);
            fe.write(&h.xs, &mut h.g, sector, &data);
            let done = h.run(&mut d, &mut fe);
            assert_eq!(done.len(), 1);
            assert_eq!(done[0].status, BLKIF_RSP_OKAY, "{len} B write");
            let at = sector as usize * 512;
            assert_eq!(mock.borrow().namespaces[0].data[at..at + len], data[..], "{len} B on the namespace");
            fe.read(&h.xs, &mut h.g, sector, len);
            let done = h.run(&mut d, &mut fe);
            assert_eq!(done[0].status, BLKIF_RSP_OKAY, "{len} B read");
            assert_eq!(done[0].data, data, "{len} B read back");
        }
        // Zero copy: every byte by the device, none by the CPU.
        let stats = d.connection().unwrap().stats;
        assert_eq!(stats.cpu_bytes, 0, "the CPU copied data");
        assert!(mock.borrow().dma_bytes >= 2 * 11 * 4096, "the device moved the data");
        clean(&mock);
    }
}

#[test]
fn flush_and_discard_reach_the_device() {
    let (dev, mock, bus) = device(|_| {});
    let mut h = Harness::new();
    let (mut d, mut fe) = attach(&mut h, store(&dev, &bus, 1), true, false);
    assert_eq!(h.xs.get(&format!("{}/feature-flush-cache", fe.be)), Some("1"));
    assert_eq!(h.xs.get(&format!("{}/feature-discard", fe.be)), Some("1"));
    mock.borrow_mut().namespaces[0].data.fill(0x5a);
    fe.simple(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, false);
    // A whole-disk discard (16384 sectors): piecewise, all of it.
    fe.simple(BLKIF_OP_DISCARD, 0, 16384, false);
    let done = h.run(&mut d, &mut fe);
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|x| x.status == BLKIF_RSP_OKAY));
    assert_eq!(mock.borrow().flushes, 1);
    assert!(mock.borrow().namespaces[0].data.iter().all(|&b| b == 0), "the discard was not all done");
    clean(&mock);
}

#[test]
fn a_flush_is_never_refused_even_without_a_write_cache() {
    let (dev, mock, bus) = device(|m| m.vwc = false);
    let mut h = Harness::new();
    let (mut d, mut fe) = attach(&mut h, store(&dev, &bus, 1), true, false);
    assert_eq!(h.xs.get(&format!("{}/feature-flush-cache", fe.be)), Some("1"));
    fe.simple(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, false);
    let done = h.run(&mut d, &mut fe);
    assert_eq!(done[0].status, BLKIF_RSP_OKAY);
    assert_eq!(mock.borrow().flushes, 0, "nothing to flush: done at once");
}

#[test]
fn a_4k_namespace_keeps_512_byte_sectors() {
    let (dev, mock, bus) = device(|m| m.namespaces = vec![MockNs::new(2048, 12)]);
    let mut h = Harness::new();
    let (mut d, mut fe) = attach(&mut h, store(&dev, &bus, 1), true, false);
    // 2048 blocks of 4 KiB = 16384 sectors of 512 bytes; sector-size states the block.
    assert_eq!(fe.sectors(&h.xs), 16384);
    assert_eq!(h.xs.get(&format!("{}/sector-size", fe.be)), Some("4096"));
    let data = pattern(3, 64 * 1024);
    fe.write(&h.xs, &mut h.g, 8, &data);
    let done = h.run(&mut d, &mut fe);
    assert_eq!(done[0].status, BLKIF_RSP_OKAY);
    assert_eq!(mock.borrow().namespaces[0].data[4096..4096 + 64 * 1024], data[..]);
    // Not aligned to the block: refused, nothing sent.
    let before = mock.borrow().io_commands;
    fe.write(&h.xs, &mut h.g, 9, &pattern(4, 4096));
    let done = h.run(&mut d, &mut fe);
    assert_ne!(done[0].status, BLKIF_RSP_OKAY);
    assert_eq!(mock.borrow().io_commands, before);
    clean(&mock);
}

#[test]
fn a_device_error_reaches_the_guest_and_a_hung_device_times_out() {
    let (dev, mock, bus) = device(|m| m.faults.media_error_lba = Some(100));
    let mut h = Harness::new();
    let (mut d, mut fe) = attach(&mut h, store(&dev, &bus, 1), true, false);
    fe.read(&h.xs, &mut h.g, 96, 8192);
    let done = h.run(&mut d, &mut fe);
    assert_eq!(done[0].status, BLKIF_RSP_ERROR);
    // Hung: the read waits, then fails after the I/O timeout; the device comes back.
    mock.borrow_mut().faults.stall = true;
    fe.read(&h.xs, &mut h.g, 0, 4096);
    fe.push();
    let mut answered = Vec::new();
    for _ in 0..4 {
        let _ = d.process(&mut h.xs, &mut h.g, &mut h.ev);
        answered.extend(fe.complete(&mut h.g));
    }
    assert!(answered.is_empty(), "answered before the timeout");
    advance(nvme::controller::IO_TIMEOUT_NS + 1_000_000);
    for _ in 0..4 {
        let _ = d.process(&mut h.xs, &mut h.g, &mut h.ev);
        answered.extend(fe.complete(&mut h.g));
    }
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].status, BLKIF_RSP_ERROR);
    assert!(!mock.borrow().faults.stall, "the reset un-hung the controller");
    for _ in 0..100 {
        dev.borrow_mut().poll();
        advance(1_000_000);
    }
    fe.read(&h.xs, &mut h.g, 0, 4096);
    let done = h.run(&mut d, &mut fe);
    assert_eq!(done[0].status, BLKIF_RSP_OKAY, "served again after the reset");
    clean(&mock);
}

/// A frontend that goes with a command on the device: its page stays mapped (the device
/// may still DMA into it) until the device is done, then the store lets go of it; nothing
/// of it reaches the next connection.
#[test]
fn a_frontend_gone_mid_dma_keeps_its_page_mapped_until_the_device_is_done() {
    let (dev, mock, bus) = device(|_| {});
    let mut h = Harness::new();
    let (mut d, mut fe) = attach(&mut h, store(&dev, &bus, 1), true, false);
    mock.borrow_mut().faults.stall = true;
    fe.read(&h.xs, &mut h.g, 0, 8192);
    fe.push();
    let _ = d.process(&mut h.xs, &mut h.g, &mut h.ev);
    assert_eq!(dev.borrow().controller().outstanding(), 1);
    let mapped = h.g.counters().mapped_now;
    d.force_disconnect(&mut h.g, &mut h.ev);
    assert!(h.g.counters().mapped_now >= 1, "the page under DMA was unmapped ({mapped} before)");
    assert!(d.store().unwrap().has_work(), "the store forgot the command on the device");
    // The device never answers: after the timeout the controller is reset and the store
    // lets go (the mapping then goes through the runtime's safety-net unmap).
    advance(nvme::controller::IO_TIMEOUT_NS + 1_000_000);
    for _ in 0..50 {
        d.store_mut().unwrap().poll();
        advance(1_000_000);
    }
    assert!(!d.store().unwrap().has_work());
    // Known limit: the engine has no connection left to unmap them in a batch, so the two
    // pages go through the safety net (the fake counts them as dropped without an unmap;
    // the kernel's `Mapping` unmaps them in its `Drop`, `safety_net_unmaps`).
    assert_eq!(h.g.counters().leaked, 2);
    let mut out = Vec::new();
    d.store_mut().unwrap().complete(&mut out);
    assert!(out.is_empty(), "an orphan reached a later connection");
    clean(&mock);
}

#[test]
fn flushes_as_linux_sends_them_reach_the_device_and_never_fail() {
    let (dev, mock, bus) = device(|_| {});
    let mut h = Harness::new();
    let (mut d, mut fe) = attach(&mut h, store(&dev, &bus, 1), true, false);
    // An empty flush carries `blk_rq_pos` of a flush request: (sector_t)-1.
    fe.simple(BLKIF_OP_FLUSH_DISKCACHE, u64::MAX, 0, false);
    let done = h.run(&mut d, &mut fe);
    assert_eq!(done[0].status, BLKIF_RSP_OKAY, "an empty flush failed: Linux 6.11+ would drop flushes for good");
    assert_eq!(mock.borrow().flushes, 1);
    // A REQ_PREFLUSH | REQ_FUA write (direct: Linux never sends an indirect one): the flush
    // goes with it, the data lands.
    for (i, op) in [BLKIF_OP_WRITE_BARRIER, BLKIF_OP_FLUSH_DISKCACHE].into_iter().enumerate() {
        for len in [512usize, 4096, 11 * 4096] {
            let data = pattern(len as u64 + i as u64, len);
            fe.write_as(&h.xs, &mut h.g, op, 64, &data);
            let done = h.run(&mut d, &mut fe);
            assert_eq!(done[0].status, BLKIF_RSP_OKAY, "op {op}, {len} B");
            assert_eq!(mock.borrow().namespaces[0].data[64 * 512..64 * 512 + len], data[..]);
        }
    }
    assert_eq!(mock.borrow().flushes, 7, "one flush per flushing request");
    assert_eq!(d.connection().unwrap().stats.errors(), 0);
    clean(&mock);
}
