//! The engine against the Linux-like mock frontend: handshake, data verified byte for byte
//! on every path and layout, batching asserted from hypercall counts, resources released.
// Casts here are on the tests' own small values.
#![allow(clippy::cast_possible_truncation)]
use blkback::abi::Abi;
use blkback::device::DeviceConfig;
use blkback::engine::DataPath;
use blkback::store::{NullStore, RamStore};
use blkback::testing::*;
use xen_sys_mini::io::blkif::*;
use xen_sys_mini::io::xenbus::XenbusState;

const MIB: usize = 1 << 20;

fn cfg() -> DeviceConfig {
    DeviceConfig::default()
}

fn ok(d: &[Done]) {
    for x in d {
        assert_eq!(x.status, BLKIF_RSP_OKAY, "request {:#x} (op {}) failed", x.id, x.op);
    }
}

#[test]
fn handshake_writes_the_keys_linux_blkfront_needs() {
    let mut h = Harness::new();
    let (mut dev, mut fe) = h.attach(2, 51712, 8 * MIB, false, cfg(), FrontendOpts::default());
    // Probe: InitWait with the advertised limits (libxl waits for state 2).
    assert_eq!(fe.backend_state(&h.xs), Some(2));
    for k in ["feature-max-indirect-segments", "max-ring-page-order", "multi-queue-max-queues"] {
        assert!(h.xs.get(&format!("{}/{k}", fe.be)).is_some(), "missing {k}");
    }
    assert_eq!(h.xs.get(&format!("{}/max-ring-page-order", fe.be)), Some("4"));
    // Nothing happens while the frontend is still Initialising.
    h.update(&mut dev);
    assert_eq!(dev.state(), XenbusState::InitWait);
    let before = h.xs.transactions;
    assert!(h.connect(&mut dev, &mut fe));
    assert_eq!(dev.state(), XenbusState::Connected);
    assert_eq!(h.xs.transactions - before, 1, "connect keys and state in one transaction");
    let get = |k: &str| h.xs.get(&format!("{}/{k}", fe.be)).map(str::to_string);
    assert_eq!(get("sectors").as_deref(), Some("16384"));
    assert_eq!(get("info").as_deref(), Some("0"));
    assert_eq!(get("sector-size").as_deref(), Some("512"));
    assert_eq!(get("physical-sector-size").as_deref(), Some("4096"));
    assert_eq!(get("feature-flush-cache").as_deref(), Some("1"));
    assert_eq!(get("feature-discard").as_deref(), Some("1"));
    assert_eq!(get("feature-persistent").as_deref(), Some("1"));
    assert_eq!(get("state").as_deref(), Some("4"));
    assert_eq!(h.xs.get(&format!("{}/state", fe.fe)), Some("4"));
}

fn roundtrip(abi: Abi, persistent: bool, order: u32, queues: u32) {
    let mut h = Harness::new();
    let opts = FrontendOpts { abi, persistent, ring_page_order: order, queues, max_segments: 11 };
    let (mut dev, mut fe) = h.attach(2, 51712, 16 * MIB, false, cfg(), opts);
    assert!(h.connect(&mut dev, &mut fe), "connect");
    assert_eq!(dev.connection().map(|c| c.ports().count()), Some(queues as usize));
    // Sizes from 512 B to 44 KiB (11 pages), at page-aligned and sector-shifted offsets.
    let mut expect = vec![0u8; 16 * MIB];
    let mut sector = 0u64;
    let mut ids = Vec::new();
    for (i, &len) in [512usize, 1024, 4096, 8192, 12288, 45056, 3584].iter().enumerate() {
        let off = if i % 2 == 1 { 1024 } else { 0 };
        let len = len.min(11 * 4096 - off);
        let data = pattern(i as u64, len);
        ids.push(fe.rw(&h.xs, &mut h.g, true, sector, len, Some(&data), off));
        expect[sector as usize * 512..][..len].copy_from_slice(&data);
        sector += (len as u64).div_ceil(512) + 3;
    }
    let done = h.run(&mut dev, &mut fe);
    assert_eq!(done.len(), ids.len());
    ok(&done);
    assert_eq!(fe.bogus_responses, 0);
    // Read everything back in one request per 44 KiB.
    let mut got = Vec::new();
    let total = sector as usize * 512;
    let mut at = 0usize;
    while at < total {
        let n = (total - at).min(11 * 4096);
        fe.rw(&h.xs, &mut h.g, false, (at / 512) as u64, n, None, 0);
        at += n;
    }
    let done = h.run(&mut dev, &mut fe);
    ok(&done);
    let mut done = done;
    done.sort_by_key(|d| d.id);
    for d in done {
        got.extend(d.data);
    }
    assert_eq!(got.len(), total);
    assert!(got == expect[..total], "data read back differs");
    assert_eq!(h.g.counters().ro_violations, 0);
    assert_eq!(fe.busy_grants, 0, "the backend still had data grants mapped after responding");
}

#[test]
fn direct_requests_native_single_page_ring() {
    roundtrip(Abi::Native, false, 0, 1);
}

#[test]
fn direct_requests_x86_32_layout() {
    roundtrip(Abi::X86_32, false, 0, 1);
}

#[test]
fn multi_page_ring_and_four_queues() {
    roundtrip(Abi::Native, false, 4, 4);
}

#[test]
fn persistent_grants_roundtrip() {
    roundtrip(Abi::Native, true, 2, 2);
}

#[test]
fn a_pass_of_direct_requests_costs_one_map_and_one_unmap() {
    let mut h = Harness::new();
    let (mut dev, mut fe) = h.attach(2, 51712, 8 * MIB, false, cfg(), FrontendOpts::default());
    assert!(h.connect(&mut dev, &mut fe));
    for i in 0..20u64 {
        fe.write(&h.xs, &mut h.g, i * 88, &pattern(i, 11 * 4096));
    }
    let before = h.g.counters();
    let done = h.run(&mut dev, &mut fe);
    ok(&done);
    let after = h.g.counters();
    assert_eq!(done.len(), 20);
    assert_eq!(after.map_calls - before.map_calls, 1, "20 requests x 11 segments in one map call");
    assert_eq!(after.map_ops - before.map_ops, 220);
    assert_eq!(after.unmap_calls - before.unmap_calls, 1);
    assert_eq!(after.mapped_now, 1, "only the ring page stays mapped");
}

#[test]
fn indirect_requests_up_to_4096_segments_cost_two_maps_and_one_unmap() {
    let mut h = Harness::new();
    let mut c = cfg();
    c.adv.max_indirect_segments = 4096;
    let opts = FrontendOpts { max_segments: 4096, ring_page_order: 1, ..Default::default() };
    let (mut dev, mut fe) = h.attach(2, 51712, 40 * MIB, false, c, opts);
    assert!(h.connect(&mut dev, &mut fe));
    // 16 MiB (4096 pages, 8 indirect pages) + 1 MiB (256 segments) + 44 KiB+4K (12 segments).
    let big = pattern(7, 4096 * 4096);
    let mid = pattern(8, 256 * 4096);
    let small = pattern(9, 12 * 4096);
    // The 16 MiB request is a turn's work on its own (`TURN_SEGMENTS`): one pass.
    fe.write(&h.xs, &mut h.g, 0, &big);
    let before = h.g.counters();
    let done = h.run(&mut dev, &mut fe);
    ok(&done);
    let after = h.g.counters();
    assert_eq!(done.len(), 1);
    assert_eq!(after.map_calls - before.map_calls, 2, "indirect pages in one batch, data in another");
    assert_eq!(after.map_ops - before.map_ops, 8 + 4096);
    assert_eq!(after.unmap_calls - before.unmap_calls, 1);
    // The other two share a pass: still two map calls and one unmap.
    fe.write(&h.xs, &mut h.g, 40000, &mid);
    fe.write(&h.xs, &mut h.g, 60000, &small);
    let before = h.g.counters();
    let done = h.run(&mut dev, &mut fe);
    ok(&done);
    let after = h.g.counters();
    assert_eq!(done.len(), 2);
    assert_eq!(after.map_calls - before.map_calls, 2, "indirect pages in one batch, data in another");
    assert_eq!(after.map_ops - before.map_ops, (1 + 1) + (256 + 12));
    assert_eq!(after.unmap_calls - before.unmap_calls, 1);
    let st = dev.connection().map(|c| c.stats).unwrap_or_default();
    assert_eq!(st.indirect_req, 3);
    // Read back the big one through an indirect READ.
    fe.read(&h.xs, &mut h.g, 0, big.len());
    let done = h.run(&mut dev, &mut fe);
    ok(&done);
    assert!(done[0].data == big, "16 MiB indirect read differs");
    assert_eq!(h.g.counters().ro_violations, 0);
}

#[test]
fn indirect_segment_count_above_the_advertised_limit_is_refused() {
    let mut h = Harness::new();
    let mut c = cfg();
    c.adv.max_indirect_segments = 32;
    let opts = FrontendOpts { max_segments: 4096, ..Default::default() };
    let (mut dev, mut fe) = h.attach(2, 51712, 8 * MIB, false, c, opts);
    assert!(h.connect(&mut dev, &mut fe));
    fe.write(&h.xs, &mut h.g, 0, &pattern(1, 33 * 4096));
    fe.write(&h.xs, &mut h.g, 0, &pattern(1, 32 * 4096));
    let done = h.run(&mut dev, &mut fe);
    let mut st: Vec<i16> = done.iter().map(|d| d.status).collect();
    st.sort();
    assert_eq!(st, [BLKIF_RSP_ERROR, BLKIF_RSP_OKAY]);
}

#[test]
fn persistent_path_maps_nothing_once_warm() {
    let mut h = Harness::new();
    let opts = FrontendOpts { persistent: true, ..Default::default() };
    let (mut dev, mut fe) = h.attach(2, 51712, 8 * MIB, false, cfg(), opts);
    assert!(h.connect(&mut dev, &mut fe));
    let data = pattern(3, 8 * 4096);
    for i in 0..4u64 {
        fe.write(&h.xs, &mut h.g, i * 64, &data);
    }
    ok(&h.run(&mut dev, &mut fe));
    let warm = h.g.counters();
    for round in 0..5u64 {
        for i in 0..4u64 {
            fe.rw(&h.xs, &mut h.g, round % 2 == 0, i * 64, data.len(), Some(&data), 0);
        }
        let done = h.run(&mut dev, &mut fe);
        ok(&done);
        if round % 2 == 1 {
            assert!(done.iter().all(|d| d.data == data));
        }
    }
    let after = h.g.counters();
    assert_eq!(after.map_calls, warm.map_calls, "warm persistent passes must not map");
    assert_eq!(after.unmap_calls, warm.unmap_calls, "warm persistent passes must not unmap");
    let st = dev.connection().map(|c| c.stats).unwrap_or_default();
    assert!(st.persistent_hits >= 5 * 4 * 8, "hits {}", st.persistent_hits);
    // Disconnect purges the pool: every mapping released.
    fe.set_state(&mut h.xs, XenbusState::Closing);
    h.update(&mut dev);
    assert_eq!(h.g.counters().mapped_now, 0);
    assert_eq!(h.g.counters().leaked, 0);
    assert_eq!(fe.release_rings(&mut h.g), 0, "ring or persistent grants still mapped");
}

#[test]
fn persistent_pool_is_bounded() {
    let mut h = Harness::new();
    let mut c = cfg();
    c.persistent_cap = 16;
    let opts = FrontendOpts { persistent: true, ..Default::default() };
    let (mut dev, mut fe) = h.attach(2, 51712, 8 * MIB, false, c, opts);
    assert!(h.connect(&mut dev, &mut fe));
    // 3 x 11 pages in flight at once: 33 distinct grants, more than the cap.
    for i in 0..3u64 {
        fe.write(&h.xs, &mut h.g, i * 100, &pattern(i, 11 * 4096));
    }
    ok(&h.run(&mut dev, &mut fe));
    assert!(dev.connection().map_or(0, |c| c.persistent_len()) <= 16);
    assert!(h.g.counters().mapped_now <= 16 + 1);
}

#[test]
fn copy_path_moves_data_with_one_copy_call_and_no_mapping() {
    let mut h = Harness::new();
    let backing = FrameBacking::new(&mut h.g, 8 * MIB, 0x10_0000);
    let store: RamStore<FrameBacking, _> = RamStore::new(backing, false);
    let mut c = cfg();
    c.path = DataPath::Copy;
    let (mut dev, mut fe) = h.attach_store(2, 51712, store, "w", c, FrontendOpts::default());
    assert!(h.connect(&mut dev, &mut fe));
    let data: Vec<Vec<u8>> = (0..6u64).map(|i| pattern(i + 40, 11 * 4096 - 1024)).collect();
    for (i, d) in data.iter().enumerate() {
        fe.rw(&h.xs, &mut h.g, true, i as u64 * 100, d.len(), Some(d), 1024);
    }
    let before = h.g.counters();
    let done = h.run(&mut dev, &mut fe);
    ok(&done);
    let after = h.g.counters();
    assert_eq!(after.copy_calls - before.copy_calls, 1, "one GNTTABOP_copy for the whole pass");
    assert_eq!(after.map_calls, before.map_calls, "the copy path maps no data page");
    for (i, d) in data.iter().enumerate() {
        assert!(
            dev.store().expect("served").backing().bytes(i * 100 * 512, d.len()) == *d,
            "request {i} not in the store"
        );
    }
    // And back.
    for (i, d) in data.iter().enumerate() {
        fe.read(&h.xs, &mut h.g, i as u64 * 100, d.len());
        let done = h.run(&mut dev, &mut fe);
        ok(&done);
        assert!(done[0].data == *d);
    }
    let st = dev.connection().map(|c| c.stats).unwrap_or_default();
    assert_eq!(st.cpu_bytes, 0, "the CPU moved no data on the copy path");
}

#[test]
fn flush_discard_and_secure_discard() {
    let mut h = Harness::new();
    let (mut dev, mut fe) = h.attach(2, 51712, 8 * MIB, false, cfg(), FrontendOpts::default());
    assert!(h.connect(&mut dev, &mut fe));
    let d = pattern(5, 40 * 1024);
    fe.write(&h.xs, &mut h.g, 0, &d);
    ok(&h.run(&mut dev, &mut fe));
    fe.simple(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, false);
    fe.simple(BLKIF_OP_DISCARD, 16, 32, false);
    fe.simple(BLKIF_OP_DISCARD, 64, 8, true);
    let done = h.run(&mut dev, &mut fe);
    ok(&done);
    let st = dev.connection().map(|c| c.stats).unwrap_or_default();
    assert_eq!((st.f_req, st.ds_req), (1, 2));
    fe.read(&h.xs, &mut h.g, 0, d.len());
    let got = h.run(&mut dev, &mut fe).remove(0).data;
    let mut want = d.clone();
    want[16 * 512..48 * 512].fill(0);
    want[64 * 512..72 * 512].fill(0);
    assert!(got == want, "discarded ranges must read back as zeroes, the rest unchanged");
}

#[test]
fn null_store_refuses_secure_discard_with_eopnotsupp() {
    let mut h = Harness::new();
    let (mut dev, mut fe) = h.attach_store(2, 51712, NullStore::new(1 << 20), "w", cfg(), FrontendOpts::default());
    assert!(h.connect(&mut dev, &mut fe));
    let id = fe.simple(BLKIF_OP_DISCARD, 0, 8, true);
    let done = h.run(&mut dev, &mut fe);
    assert_eq!((done[0].id, done[0].status), (id, BLKIF_RSP_EOPNOTSUPP));
}

#[test]
fn read_only_disk() {
    let mut h = Harness::new();
    let (mut dev, mut fe) = h.attach(2, 51712, 4 * MIB, true, cfg(), FrontendOpts::default());
    assert!(h.connect(&mut dev, &mut fe));
    assert_eq!(h.xs.get(&format!("{}/info", fe.be)), Some("4"), "VDISK_READONLY");
    assert_eq!(h.xs.get(&format!("{}/feature-discard", fe.be)), Some("0"));
    let w = fe.write(&h.xs, &mut h.g, 0, &pattern(1, 4096));
    let r = fe.read(&h.xs, &mut h.g, 0, 4096);
    let d = fe.simple(BLKIF_OP_DISCARD, 0, 8, false);
    let done = h.run(&mut dev, &mut fe);
    let status = |id| done.iter().find(|x| x.id == id).map(|x| x.status);
    assert_eq!(status(w), Some(BLKIF_RSP_ERROR));
    assert_eq!(status(r), Some(BLKIF_RSP_OKAY));
    assert_eq!(status(d), Some(BLKIF_RSP_EOPNOTSUPP), "discard was not advertised on a read-only disk");
    assert!(done.iter().find(|x| x.id == r).is_some_and(|x| x.data.iter().all(|&b| b == 0)));
    assert_eq!(dev.connection().map(|c| c.stats.err_read_only), Some(1));
}

#[test]
fn inflight_pool_bound_leaves_requests_on_the_ring() {
    let mut h = Harness::new();
    let mut c = cfg();
    c.max_inflight = 4;
    let (mut dev, mut fe) = h.attach(2, 51712, 8 * MIB, false, c, FrontendOpts::default());
    assert!(h.connect(&mut dev, &mut fe));
    for i in 0..20u64 {
        fe.write(&h.xs, &mut h.g, i * 8, &pattern(i, 4096));
    }
    fe.push();
    // One process call: MAX_ROUNDS passes of at most 4 requests each.
    let r = dev.process(&mut h.xs, &mut h.g, &mut h.ev);
    assert!(r.requests <= 4 * 8);
    assert!(h.g.counters().max_mapped <= 4 + 1, "more than the pool's worth mapped at once");
    let st = dev.connection().map(|c| c.stats).unwrap_or_default();
    assert!(st.oo_req > 0, "running out of pool slots is counted");
    let mut done = fe.complete(&mut h.g);
    done.extend(h.run(&mut dev, &mut fe));
    assert_eq!(done.len(), 20);
    ok(&done);
}

#[test]
fn close_reconnect_detach_and_directory_removal() {
    let mut h = Harness::new();
    let (mut dev, mut fe) =
        h.attach(2, 51712, 4 * MIB, false, cfg(), FrontendOpts { persistent: true, ..Default::default() });
    assert!(h.connect(&mut dev, &mut fe));
    fe.write(&h.xs, &mut h.g, 0, &pattern(1, 8192));
    ok(&h.run(&mut dev, &mut fe));
    // The frontend closes: the backend disconnects and releases everything.
    fe.set_state(&mut h.xs, XenbusState::Closing);
    h.update(&mut dev);
    assert_eq!(dev.state(), XenbusState::Closing);
    fe.set_state(&mut h.xs, XenbusState::Closed);
    h.update(&mut dev);
    assert_eq!(dev.state(), XenbusState::Closed);
    assert_eq!(h.g.counters().mapped_now, 0);
    assert_eq!(h.ev.bound_count(), 0);
    assert_eq!(fe.release_rings(&mut h.g), 0);
    // It comes back (module reloaded): a new handshake, data still there.
    fe.set_state(&mut h.xs, XenbusState::Initialising);
    h.update(&mut dev);
    assert_eq!(dev.state(), XenbusState::InitWait);
    assert!(h.connect(&mut dev, &mut fe));
    fe.read(&h.xs, &mut h.g, 0, 8192);
    assert!(h.run(&mut dev, &mut fe)[0].data == pattern(1, 8192));
    // libxl detaches: online=0, backend state=5; blkfront closes; we go Closed and ask
    // for our directory to be removed.
    h.xs.set(&format!("{}/online", fe.be), "0");
    h.xs.set(&format!("{}/state", fe.be), "5");
    let o = h.update(&mut dev);
    assert!(!o.remove_dir);
    fe.set_state(&mut h.xs, XenbusState::Closed);
    // Closed while connected: notified once and served until idle (a device alone is
    // idle at its next look), then Closed and the directory.
    let o = h.update(&mut dev);
    assert!(o.kicked && !o.remove_dir);
    let o = h.update(&mut dev);
    assert!(o.remove_dir);
    assert_eq!(h.xs.get(&format!("{}/state", fe.be)), Some("6"));
    assert_eq!(h.xs.watches.len(), 2, "the device watches its directory and the frontend state");
    dev.remove(&mut h.xs, &fe.be).unwrap();
    assert!(!h.xs.exists(&fe.be));
    assert!(h.xs.watches.is_empty(), "watches dropped with the device");
    assert_eq!(h.g.counters().mapped_now, 0);
    assert_eq!(h.g.counters().leaked, 0);
}

#[test]
fn frontend_domain_destroyed_mid_io_releases_everything() {
    let mut h = Harness::new();
    let (mut dev, mut fe) =
        h.attach(2, 51712, 4 * MIB, false, cfg(), FrontendOpts { persistent: true, ..Default::default() });
    assert!(h.connect(&mut dev, &mut fe));
    for i in 0..8u64 {
        fe.write(&h.xs, &mut h.g, i * 16, &pattern(i, 8192));
    }
    fe.push();
    // The domain dies with requests on the ring: its directory disappears.
    h.xs.remove_tree(&fe.fe);
    h.g.forget_domain(fe.dom);
    h.update(&mut dev);
    assert_eq!(dev.state(), XenbusState::Closed);
    assert!(dev.connection().is_none());
    assert_eq!(h.g.counters().mapped_now, 0, "mappings of the dead frontend remain");
    assert_eq!(h.ev.bound_count(), 0);
    assert_eq!(h.g.counters().leaked, 0);
}

#[test]
fn statistics_are_published() {
    let mut h = Harness::new();
    let (mut dev, mut fe) = h.attach(2, 51712, 4 * MIB, false, cfg(), FrontendOpts::default());
    assert!(h.connect(&mut dev, &mut fe));
    fe.write(&h.xs, &mut h.g, 0, &pattern(1, 8192));
    fe.read(&h.xs, &mut h.g, 0, 4096);
    fe.simple(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, false);
    ok(&h.run(&mut dev, &mut fe));
    dev.publish_stats(&mut h.xs).unwrap();
    let s = |k: &str| {
        h.xs.get(&format!("/local/domain/{BACKEND}/data/blkback/vbd/{}/{}/{k}", fe.dom, fe.devid)).map(str::to_string)
    };
    assert_eq!(s("rd_req").as_deref(), Some("1"));
    assert_eq!(s("wr_req").as_deref(), Some("1"));
    assert_eq!(s("f_req").as_deref(), Some("1"));
    assert_eq!(s("wr_sect").as_deref(), Some("16"));
    assert_eq!(s("rd_sect").as_deref(), Some("8"));
}

#[test]
fn notifications_follow_rsp_event() {
    let mut h = Harness::new();
    let (mut dev, mut fe) = h.attach(2, 51712, 4 * MIB, false, cfg(), FrontendOpts::default());
    assert!(h.connect(&mut dev, &mut fe));
    let port = fe.ports[0];
    fe.write(&h.xs, &mut h.g, 0, &pattern(1, 4096));
    ok(&h.run(&mut dev, &mut fe));
    assert_eq!(h.ev.notifications(fe.dom, port), 1, "rsp_event asked for a notification");
    // The frontend did not consume: rsp_event not advanced → no further notification is
    // needed for responses it has not asked about... after consuming it asks again.
    fe.write(&h.xs, &mut h.g, 8, &pattern(2, 4096));
    ok(&h.run(&mut dev, &mut fe));
    assert_eq!(h.ev.notifications(fe.dom, port), 2);
}

#[test]
fn discards_and_writes_in_one_pass_keep_ring_order_on_every_path() {
    for path in [DataPath::Map, DataPath::Copy] {
        let mut h = Harness::new();
        let backing = FrameBacking::new(&mut h.g, 4 * MIB, 0x20_0000);
        let store: RamStore<FrameBacking, _> = RamStore::new(backing, false);
        let mut c = cfg();
        c.path = path;
        let (mut dev, mut fe) = h.attach_store(2, 51712, store, "w", c, FrontendOpts::default());
        assert!(h.connect(&mut dev, &mut fe));
        let a = pattern(1, 8 * 4096);
        let b = pattern(2, 8 * 4096);
        // One pass: discard, then a write over it; a write, then a discard over that.
        fe.simple(BLKIF_OP_DISCARD, 0, 64, false);
        fe.write(&h.xs, &mut h.g, 0, &a);
        fe.write(&h.xs, &mut h.g, 1000, &b);
        fe.simple(BLKIF_OP_DISCARD, 1000, 64, false);
        ok(&h.run(&mut dev, &mut fe));
        fe.read(&h.xs, &mut h.g, 0, a.len());
        fe.read(&h.xs, &mut h.g, 1000, b.len());
        let mut back = h.run(&mut dev, &mut fe);
        back.sort_by_key(|d| d.id);
        assert!(back[0].data == a, "{path:?}: a discard earlier in the ring wiped a later write");
        assert!(back[1].data.iter().all(|&x| x == 0), "{path:?}: a discard later in the ring did not apply");
    }
}

/// `null:<size>:noop`, the benchmark's transport ceiling: every valid request is answered
/// as done without a single grant operation (not even for indirect pages), invalid ones
/// are still refused.
#[test]
fn the_noop_path_answers_without_touching_any_grant() {
    let mut h = Harness::new();
    let c = DeviceConfig { path: DataPath::Noop, ..cfg() };
    let opts = FrontendOpts { max_segments: 256, persistent: true, ..FrontendOpts::default() };
    let (mut dev, mut fe) = h.attach_store(2, 51712, NullStore::new(8 * MIB as u64 / 512), "w", c, opts);
    assert!(h.connect(&mut dev, &mut fe));
    let before = h.g.counters();
    let data = pattern(3, MIB);
    fe.rw(&h.xs, &mut h.g, true, 0, MIB, Some(&data), 0);
    fe.read(&h.xs, &mut h.g, 0, 4096);
    fe.read(&h.xs, &mut h.g, 8 * MIB as u64 / 512, 4096);
    let done = h.run(&mut dev, &mut fe);
    assert_eq!(done.len(), 3);
    assert_eq!(done.iter().filter(|d| d.status == BLKIF_RSP_OKAY).count(), 2, "the read past the end is refused");
    let after = h.g.counters();
    assert_eq!((after.map_calls, after.copy_calls), (before.map_calls, before.copy_calls), "a grant was touched");
    assert_eq!(dev.connection().map(|c| c.stats.indirect_req), Some(0), "indirect pages were read");
}

/// The persistent pool holds what the frontend keeps granted: 8 × 1 MiB requests in flight
/// (8 × 257 = 2,056 grants, more than Linux's 1056 per queue) are warm after one round, so
/// later rounds map and unmap nothing. Before, the pool held 1056 and, once any miss had
/// ever happened, evicted 8 entries every pass: every round re-mapped about half the grants.
#[test]
fn a_pool_that_fits_the_working_set_stays_warm() {
    let mut h = Harness::new();
    // As the service gives it: the budget's share, trimmed to the ring's working set.
    let c = DeviceConfig { persistent_cap: usize::MAX, ..cfg() };
    let opts = FrontendOpts { max_segments: 256, persistent: true, ..FrontendOpts::default() };
    let (mut dev, mut fe) = h.attach(2, 51712, 16 * MIB, false, c, opts);
    assert!(h.connect(&mut dev, &mut fe));
    let conn_cap = dev.connection().map(|c| c.persistent_cap());
    assert_eq!(conn_cap, Some(32 * 257), "32 slots × (256 segments + 1 indirect page)");
    let data = pattern(9, MIB);
    let mut counts = Vec::new();
    for round in 0..3u64 {
        let before = h.g.counters();
        for i in 0..8u64 {
            fe.rw(&h.xs, &mut h.g, round == 0, i * 2048, MIB, Some(&data), 0);
        }
        let done = h.run(&mut dev, &mut fe);
        assert_eq!(done.len(), 8);
        ok(&done);
        if round > 0 {
            assert!(done.iter().all(|d| d.data == data), "round {round}: data read back differs");
        }
        let after = h.g.counters();
        counts.push((after.map_ops - before.map_ops, after.unmap_ops - before.unmap_ops));
    }
    assert!(counts[0].0 >= 8 * 257, "the first round maps every grant: {counts:?}");
    assert_eq!(&counts[1..], &[(0, 0), (0, 0)], "a warm pool maps and unmaps nothing");
}
