//! The swap data path (`path=swap`, docs/grant-swap.md) against the fake grant table's
//! model of the patched hypervisor (`FakeGrants::swap_as`: the patch's statuses and rules):
//! data exchanged byte for byte, the per-connection and per-segment fallbacks to copying,
//! and the scratch frames never carrying one frontend's data to another.
#![allow(clippy::cast_possible_truncation)]
use blkback::device::DeviceConfig;
use blkback::engine::DataPath;
use blkback::store::RamStore;
use blkback::testing::*;
use xen_hv::XenStore;
use xen_sys_mini::io::blkif::*;

const MIB: usize = 1 << 20;
const FE: u16 = 2;

fn ok(d: &[Done]) {
    for x in d {
        assert_eq!(x.status, BLKIF_RSP_OKAY, "request {:#x} (op {}) failed", x.id, x.op);
    }
}

type SwapStore = RamStore<FrameBacking, std::rc::Rc<FakeMapping>>;

/// A swap-path device over an 8 MiB frame disk with `scratch` scratch frames.
fn setup(
    h: &mut Harness,
    scratch: usize,
    opts: FrontendOpts,
    declare: Option<&str>,
) -> (blkback::device::Device<FakeMapping, SwapStore>, MockFrontend) {
    let backing = FrameBacking::new(&mut h.g, 8 * MIB, 0x10_0000).with_scratch(&mut h.g, scratch, 0x20_0000);
    let store: SwapStore = RamStore::new(backing, false);
    let cfg = DeviceConfig { path: DataPath::Swap, ..DeviceConfig::default() };
    let (dev, fe) = h.attach_store(FE, 51712, store, "w", cfg, opts);
    if let Some(v) = declare {
        h.xs.write(&format!("{}/feature-grant-swap", fe.fe), v).unwrap();
    }
    (dev, fe)
}

fn persistent() -> FrontendOpts {
    FrontendOpts { persistent: true, ..FrontendOpts::default() }
}

fn stats(dev: &blkback::device::Device<FakeMapping, SwapStore>) -> blkback::stats::Stats {
    dev.connection().map(|c| c.stats).unwrap_or_default()
}

/// Pages a request of `n` bytes at `off` in its first page touches: its segments.
fn segs(off: usize, n: usize) -> u64 {
    (off + n).div_ceil(4096) as u64
}

/// Writes then reads back requests of 512 B to 44 KiB at shifted offsets; returns the
/// data segments (written, read).
fn round_trip(
    h: &mut Harness,
    dev: &mut blkback::device::Device<FakeMapping, SwapStore>,
    fe: &mut MockFrontend,
) -> (u64, u64) {
    let sizes = [512usize, 4096, 3 * 4096 + 1024, 11 * 4096 - 512];
    let (mut w, mut r) = (0, 0);
    for (i, &n) in sizes.iter().enumerate() {
        let d = pattern(i as u64 + 7, n);
        let sector = i as u64 * 200 + 3;
        w += segs(512 * (i % 3), n);
        r += segs(512 * (i % 2), n);
        fe.rw(&h.xs, &mut h.g, true, sector, n, Some(&d), 512 * (i % 3));
        ok(&h.run(dev, fe));
        assert!(
            dev.store().expect("served").backing().bytes(sector as usize * 512, n) == d,
            "write {i} ({n} bytes) not on the disk"
        );
        fe.rw(&h.xs, &mut h.g, false, sector, n, None, 512 * (i % 2));
        let done = h.run(dev, fe);
        ok(&done);
        assert!(done[0].data == d, "read {i} ({n} bytes) returned other data");
    }
    (w, r)
}

#[test]
fn swap_path_exchanges_every_data_segment_and_the_data_round_trips() {
    let mut h = Harness::new();
    h.g.swap_supported = true;
    let (mut dev, mut fe) = setup(&mut h, 16, persistent(), None);
    assert_eq!(h.xs.get(&format!("{}/feature-grant-swap", fe.be)), Some("3"), "advertised where the op exists");
    assert!(h.connect(&mut dev, &mut fe));
    assert_eq!(
        dev.connection().and_then(|c| c.swap_mode()),
        Some(blkback::engine::SwapMode::On { read: true, write: true })
    );
    let maps_before = h.g.counters().map_ops;
    let (w, r) = round_trip(&mut h, &mut dev, &mut fe);
    assert_eq!((w, r), (18, 18), "the layouts this test means");
    let st = stats(&dev);
    let c = h.g.counters();
    assert_eq!(st.swapped, w + r, "every data segment exchanged");
    assert_eq!(c.swapped, st.swapped, "the hypervisor model agrees");
    assert_eq!((st.swap_fallbacks, st.swap_zeroed, st.swap_mode), (0, 0, 1));
    assert_eq!(c.map_ops, maps_before, "no data page mapped (a pinned grant cannot be exchanged)");
    assert!(st.swap_calls >= 8 && c.swap_calls == st.swap_calls, "one exchange call per round");
    let pairs = st.pairs();
    assert!(pairs.iter().any(|(k, v)| *k == "swapped" && v == "36"), "published: {pairs:?}");
}

#[test]
fn a_large_request_is_exchanged_in_rounds_of_the_scratch_pool() {
    let mut h = Harness::new();
    h.g.swap_supported = true;
    let opts = FrontendOpts { max_segments: 64, ..persistent() };
    let (mut dev, mut fe) = setup(&mut h, 16, opts, None);
    assert!(h.connect(&mut dev, &mut fe));
    let d = pattern(99, 64 * 4096);
    fe.write(&h.xs, &mut h.g, 0, &d);
    ok(&h.run(&mut dev, &mut fe));
    fe.read(&h.xs, &mut h.g, 0, d.len());
    let done = h.run(&mut dev, &mut fe);
    ok(&done);
    assert!(done[0].data == d);
    let st = stats(&dev);
    assert_eq!(st.swapped, 128);
    assert_eq!(st.swap_calls, 8, "64 segments over 16 scratch frames: 4 rounds each way");
}

#[test]
fn stock_hypervisor_serves_a_swap_disk_by_copying() {
    let mut h = Harness::new();
    let (mut dev, mut fe) = setup(&mut h, 16, persistent(), None);
    assert_eq!(h.xs.get(&format!("{}/feature-grant-swap", fe.be)), None, "not advertised without the op");
    assert!(h.connect(&mut dev, &mut fe));
    round_trip(&mut h, &mut dev, &mut fe);
    let st = stats(&dev);
    assert_eq!((st.swapped, st.swap_calls, st.swap_mode), (0, 0, 2));
    assert_eq!(h.g.counters().swap_calls, 0);
    assert!(st.copy_ops >= 34, "served by GNTTABOP_copy");
}

#[test]
fn a_pv_frontend_is_refused_once_and_its_connection_copies() {
    let mut h = Harness::new();
    h.g.swap_supported = true;
    h.g.pv_domains = vec![FE];
    let (mut dev, mut fe) = setup(&mut h, 16, persistent(), None);
    assert!(h.connect(&mut dev, &mut fe));
    round_trip(&mut h, &mut dev, &mut fe);
    let st = stats(&dev);
    assert_eq!(st.swapped, 0);
    assert_eq!(st.swap_calls, 1, "bad_domain turns exchanges off after the first round");
    assert_eq!(st.swap_fallbacks, 1, "the one refused segment was copied");
    assert_eq!(st.swap_mode, 4);
}

#[test]
fn without_persistent_grants_or_a_declaration_nothing_is_exchanged() {
    let mut h = Harness::new();
    h.g.swap_supported = true;
    let (mut dev, mut fe) = setup(&mut h, 16, FrontendOpts::default(), None);
    assert!(h.connect(&mut dev, &mut fe));
    round_trip(&mut h, &mut dev, &mut fe);
    let st = stats(&dev);
    assert_eq!((st.swapped, st.swap_calls, st.swap_mode), (0, 0, 3));
}

#[test]
fn a_read_only_declaration_exchanges_reads_and_copies_writes() {
    let mut h = Harness::new();
    h.g.swap_supported = true;
    let (mut dev, mut fe) = setup(&mut h, 16, FrontendOpts::default(), Some("1"));
    assert!(h.connect(&mut dev, &mut fe));
    let (_, r) = round_trip(&mut h, &mut dev, &mut fe);
    let st = stats(&dev);
    assert_eq!(st.swapped, r, "the reads only");
    assert_eq!(st.swap_fallbacks, 0);
}

#[test]
fn a_declared_write_on_a_read_only_grant_is_refused_and_copied() {
    // The mock grants WRITE pages read-only unless persistent: the patch answers
    // general_error for those, and each such segment is copied.
    let mut h = Harness::new();
    h.g.swap_supported = true;
    let (mut dev, mut fe) = setup(&mut h, 16, FrontendOpts::default(), Some("3"));
    assert!(h.connect(&mut dev, &mut fe));
    let (w, r) = round_trip(&mut h, &mut dev, &mut fe);
    let st = stats(&dev);
    assert_eq!(st.swapped, r, "the reads");
    assert_eq!(st.swap_fallbacks, w, "every write segment fell back");
    assert_eq!(st.swap_mode, 1, "per-segment refusals keep the connection exchanging");
}

#[test]
fn a_grant_mapped_elsewhere_is_copied_not_exchanged() {
    let mut h = Harness::new();
    h.g.swap_supported = true;
    let (mut dev, mut fe) = setup(&mut h, 16, persistent(), None);
    assert!(h.connect(&mut dev, &mut fe));
    let d = pattern(3, 4096);
    fe.rw(&h.xs, &mut h.g, true, 8, 4096, Some(&d), 0);
    ok(&h.run(&mut dev, &mut fe));
    // The persistent frontend reuses that page next: map every grant of the frontend
    // meanwhile (a pin: the patch answers eagain).
    let reqs: Vec<xen_hv::MapReq> =
        h.g.granted_refs(FE).into_iter().map(|gref| xen_hv::MapReq { dom: FE, gref, readonly: true }).collect();
    let pinned = h.g.map_as(BACKEND, &reqs);
    let before = stats(&dev);
    fe.read(&h.xs, &mut h.g, 8, 4096);
    let done = h.run(&mut dev, &mut fe);
    ok(&done);
    assert!(done[0].data == d, "the copied fallback returned the data");
    let st = stats(&dev);
    assert!(pinned.iter().all(Result::is_ok), "the test's own mappings failed");
    assert_eq!(st.swap_fallbacks - before.swap_fallbacks, 1, "eagain: copied");
    assert_eq!(st.swapped, before.swapped);
    h.g.unmap_any(pinned.into_iter().filter_map(Result::ok).collect());
}

#[test]
fn scratch_frames_holding_another_frontends_data_are_zeroed_first() {
    let mut h = Harness::new();
    h.g.swap_supported = true;
    let (mut dev, mut fe) = setup(&mut h, 4, persistent(), None);
    // The scratch frames hold domain 9's secret, as after serving it.
    let secret = [0x5Au8; 4096];
    if let Some(pool) = dev.store_mut().and_then(|s| s.backing_mut().scratch.as_mut()) {
        for p in &mut pool.pages {
            h.g.local(p.0).expect("scratch frame").set(0, &secret);
            p.1 = Some(9);
        }
    }
    assert!(h.connect(&mut dev, &mut fe));
    // A 512-byte READ hands the frontend a whole scratch frame.
    fe.read(&h.xs, &mut h.g, 0, 512);
    ok(&h.run(&mut dev, &mut fe));
    let st = stats(&dev);
    assert_eq!((st.swapped, st.swap_zeroed), (1, 1));
    for p in h.g.granted_pages(FE) {
        assert!(!p.get(0, 4096).windows(64).any(|w| w == &secret[..64]), "domain 9's data reached domain 2");
    }
    // The same frame back to the same frontend needs no zeroing.
    fe.read(&h.xs, &mut h.g, 0, 512);
    ok(&h.run(&mut dev, &mut fe));
    assert_eq!(stats(&dev).swap_zeroed, 1);
}

#[test]
fn whole_page_writes_go_straight_into_the_disk_frames() {
    let mut h = Harness::new();
    h.g.swap_supported = true;
    let (mut dev, mut fe) = setup(&mut h, 16, persistent(), None);
    assert!(h.connect(&mut dev, &mut fe));
    // 8 pages at a frame-aligned sector: each a whole-page WRITE onto a whole disk frame.
    let d = pattern(5, 8 * 4096);
    fe.write(&h.xs, &mut h.g, 64, &d);
    ok(&h.run(&mut dev, &mut fe));
    let st = stats(&dev);
    assert_eq!((st.swapped, st.swap_direct), (8, 8), "exchanged with the disk's frames");
    let copies_before = st.copy_ops;
    assert!(dev.store().expect("served").backing().bytes(64 * 512, d.len()) == d, "the data is on the disk");
    // Not frame-aligned on the disk: through the scratch frames and a copy.
    fe.rw(&h.xs, &mut h.g, true, 1000 * 8 + 1, 4096, Some(&d[..4096]), 0);
    ok(&h.run(&mut dev, &mut fe));
    let st = stats(&dev);
    assert_eq!((st.swapped, st.swap_direct), (9, 8));
    assert_eq!(st.copy_ops - copies_before, 2, "two disk pieces copied from the scratch frame");
    // Everything reads back.
    fe.read(&h.xs, &mut h.g, 64, d.len());
    let done = h.run(&mut dev, &mut fe);
    ok(&done);
    assert!(done[0].data == d);
    fe.read(&h.xs, &mut h.g, 1000 * 8 + 1, 4096);
    let done = h.run(&mut dev, &mut fe);
    ok(&done);
    assert!(done[0].data == d[..4096]);
}
