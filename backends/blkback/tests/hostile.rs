//! Hostile frontends: every malformed request gets an error response with its `id` echoed;
//! a broken ring disconnects that frontend only; a frontend rewriting a request after
//! publishing it cannot make the backend act on two values; floods do not hurt neighbours.
// Casts here are on the tests' own small values.
#![allow(clippy::cast_possible_truncation)]
use blkback::abi::{encode_request, Abi, RawBody, RawRequest, MAX_SLOT};
use blkback::device::DeviceConfig;
use blkback::store::{RamStore, ZERO_PER_PASS};
use blkback::testing::*;
use xen_sys_mini::io::blkif::*;
use xen_sys_mini::io::xenbus::XenbusState;

const MIB: usize = 1 << 20;

fn rw(op: u8, id: u64, sector: u64, segs: &[(u32, u8, u8)]) -> RawRequest {
    let mut seg = [BlkifRequestSegment::default(); 11];
    for (d, &(gref, first_sect, last_sect)) in seg.iter_mut().zip(segs) {
        *d = BlkifRequestSegment { gref, first_sect, last_sect };
    }
    RawRequest { operation: op, id, body: RawBody::Rw { nr_segments: segs.len() as u8, handle: 0, sector, seg } }
}

fn connected(abi: Abi) -> (Harness, TestDevice, MockFrontend) {
    let mut h = Harness::new();
    let mut c = DeviceConfig::default();
    c.adv.max_indirect_segments = 64;
    let (mut dev, mut fe) = h.attach(2, 51712, 4 * MIB, false, c, FrontendOpts { abi, ..Default::default() });
    assert!(h.connect(&mut dev, &mut fe));
    (h, dev, fe)
}

#[test]
fn each_malformed_request_gets_its_exact_error_and_the_device_keeps_serving() {
    for abi in [Abi::Native, Abi::X86_32] {
        let (mut h, mut dev, mut fe) = connected(abi);
        let page = MemPage::new();
        let good = h.g.grant(fe.dom, &page, BACKEND, false);
        let foreign = h.g.grant(fe.dom, &page, 7, false); // granted to someone else
        let sectors = 4 * MIB as u64 / 512;
        let cases: Vec<(RawRequest, u8, i16)> = vec![
            (RawRequest { operation: 99, id: 1, body: RawBody::Other }, 99, BLKIF_RSP_EOPNOTSUPP),
            (
                RawRequest { operation: BLKIF_OP_RESERVED_1, id: 2, body: RawBody::Other },
                BLKIF_OP_RESERVED_1,
                BLKIF_RSP_EOPNOTSUPP,
            ),
            (rw(BLKIF_OP_READ, 3, 0, &[]), BLKIF_OP_READ, BLKIF_RSP_ERROR),
            (rw(BLKIF_OP_WRITE, 4, 0, &[(good, 4, 3)]), BLKIF_OP_WRITE, BLKIF_RSP_ERROR),
            (rw(BLKIF_OP_WRITE, 5, 0, &[(good, 0, 8)]), BLKIF_OP_WRITE, BLKIF_RSP_ERROR),
            (rw(BLKIF_OP_READ, 6, sectors - 1, &[(good, 0, 1)]), BLKIF_OP_READ, BLKIF_RSP_ERROR),
            (rw(BLKIF_OP_READ, 7, u64::MAX - 2, &[(good, 0, 7)]), BLKIF_OP_READ, BLKIF_RSP_ERROR),
            (rw(BLKIF_OP_READ, 8, 0, &[(0xFFFF_0000, 0, 7)]), BLKIF_OP_READ, BLKIF_RSP_ERROR),
            (rw(BLKIF_OP_READ, 9, 0, &[(foreign, 0, 7)]), BLKIF_OP_READ, BLKIF_RSP_ERROR),
            (
                RawRequest {
                    operation: BLKIF_OP_INDIRECT,
                    id: 10,
                    body: RawBody::Indirect {
                        indirect_op: BLKIF_OP_DISCARD,
                        nr_segments: 4,
                        sector: 0,
                        handle: 0,
                        grefs: [good; 8],
                    },
                },
                BLKIF_OP_DISCARD,
                BLKIF_RSP_ERROR,
            ),
            (
                RawRequest {
                    operation: BLKIF_OP_INDIRECT,
                    id: 11,
                    body: RawBody::Indirect {
                        indirect_op: BLKIF_OP_READ,
                        nr_segments: 65,
                        sector: 0,
                        handle: 0,
                        grefs: [good; 8],
                    },
                },
                BLKIF_OP_READ,
                BLKIF_RSP_ERROR,
            ),
            (
                RawRequest {
                    operation: BLKIF_OP_INDIRECT,
                    id: 12,
                    body: RawBody::Indirect {
                        indirect_op: BLKIF_OP_READ,
                        nr_segments: 0,
                        sector: 0,
                        handle: 0,
                        grefs: [good; 8],
                    },
                },
                BLKIF_OP_READ,
                BLKIF_RSP_ERROR,
            ),
            (
                // An indirect page full of zeroes: gref 0 segments, not granted → error.
                RawRequest {
                    operation: BLKIF_OP_INDIRECT,
                    id: 13,
                    body: RawBody::Indirect {
                        indirect_op: BLKIF_OP_WRITE,
                        nr_segments: 3,
                        sector: 0,
                        handle: 0,
                        grefs: [good; 8],
                    },
                },
                BLKIF_OP_WRITE,
                BLKIF_RSP_ERROR,
            ),
            (
                RawRequest {
                    operation: BLKIF_OP_DISCARD,
                    id: 14,
                    body: RawBody::Discard { flag: 0, handle: 0, sector: sectors, nr_sectors: 1 },
                },
                BLKIF_OP_DISCARD,
                BLKIF_RSP_ERROR,
            ),
            (
                RawRequest {
                    operation: BLKIF_OP_DISCARD,
                    id: 15,
                    body: RawBody::Discard { flag: 0, handle: 0, sector: 1, nr_sectors: u64::MAX },
                },
                BLKIF_OP_DISCARD,
                BLKIF_RSP_ERROR,
            ),
        ];
        // ids near u64::MAX and with every byte set must come back untouched.
        let mut expect = Vec::new();
        for (i, (mut r, op, st)) in cases.into_iter().enumerate() {
            r.id = 0xFFEE_DDCC_BBAA_9900 | i as u64;
            fe.raw(0, &encode_request(abi, &r), r.id, op);
            expect.push((r.id, op, st));
        }
        let done = h.run(&mut dev, &mut fe);
        assert_eq!(fe.bogus_responses, 0, "{abi:?}: a response with an unknown id or wrong op");
        assert_eq!(done.len(), expect.len(), "{abi:?}: every request answered exactly once");
        for (id, op, st) in expect {
            let d = done.iter().find(|d| d.id == id).unwrap_or_else(|| panic!("{abi:?}: no response for {id:#x}"));
            assert_eq!((d.op, d.status), (op, st), "{abi:?}: request {id:#x}");
        }
        assert_eq!(dev.state(), XenbusState::Connected);
        assert_eq!(h.g.counters().ro_violations, 0);
        // Still serving, data intact.
        let data = pattern(77, 8192);
        fe.write(&h.xs, &mut h.g, 100, &data);
        fe.read(&h.xs, &mut h.g, 100, data.len());
        let done = h.run(&mut dev, &mut fe);
        assert!(done.iter().all(|d| d.status == BLKIF_RSP_OKAY));
        assert!(done.iter().any(|d| d.data == data));
        assert_eq!(h.g.counters().mapped_now, 1, "{abi:?}: only the ring stays mapped");
    }
}

#[test]
fn an_empty_flush_is_accepted_whatever_its_sector_number() {
    // Linux blkfront sends REQ_OP_FLUSH with the block layer's leftover position; refusing
    // it makes blkfront print "empty flush op failed" and turn flushing off.
    for abi in [Abi::Native, Abi::X86_32] {
        let (mut h, mut dev, mut fe) = connected(abi);
        for (i, sector) in [0u64, u64::MAX, 1 << 40].into_iter().enumerate() {
            let id = 100 + i as u64;
            fe.raw(
                0,
                &encode_request(abi, &rw(BLKIF_OP_FLUSH_DISKCACHE, id, sector, &[])),
                id,
                BLKIF_OP_FLUSH_DISKCACHE,
            );
        }
        let done = h.run(&mut dev, &mut fe);
        assert_eq!(done.len(), 3);
        assert!(done.iter().all(|d| d.status == BLKIF_RSP_OKAY), "{abi:?}: {done:?}");
        assert_eq!(dev.connection().map(|c| c.stats.f_req), Some(3));
        // A flush that carries data is still range-checked.
        let page = MemPage::new();
        let g = h.g.grant(fe.dom, &page, BACKEND, true);
        fe.raw(
            0,
            &encode_request(abi, &rw(BLKIF_OP_FLUSH_DISKCACHE, 7, u64::MAX - 1, &[(g, 0, 7)])),
            7,
            BLKIF_OP_FLUSH_DISKCACHE,
        );
        let done = h.run(&mut dev, &mut fe);
        assert_eq!(done[0].status, BLKIF_RSP_ERROR);
    }
}

#[test]
fn req_prod_overflow_disconnects_that_frontend_only() {
    let mut h = Harness::new();
    let (mut bad_dev, mut bad) = h.attach(2, 51712, 4 * MIB, false, DeviceConfig::default(), FrontendOpts::default());
    let (mut good_dev, mut good) = h.attach(3, 51712, 4 * MIB, false, DeviceConfig::default(), FrontendOpts::default());
    assert!(h.connect(&mut bad_dev, &mut bad));
    assert!(h.connect(&mut good_dev, &mut good));
    let data = pattern(1, 4096);
    good.rw(&h.xs, &mut h.g, true, 0, 4096, Some(&data), 0);
    assert!(h.run(&mut good_dev, &mut good).iter().all(|d| d.status == BLKIF_RSP_OKAY));
    // A ring-and-a-bit of requests claimed at once (RING_REQUEST_PROD_OVERFLOW).
    bad.ring(0).unwrap().force_req_prod(1000).unwrap();
    let r = bad_dev.process(&mut h.xs, &mut h.g, &mut h.ev);
    assert_eq!(r.requests, 0, "nothing was consumed from a broken ring");
    assert!(bad_dev.connection().is_none());
    assert_eq!(bad_dev.state(), XenbusState::Closing);
    // Xen's convention: /local/domain/<dd>/error/backend/vbd/<fe>/<dev>/error, "<errno> <why>".
    let err_path = format!("/local/domain/{BACKEND}/error/backend/vbd/{}/51712/error", bad.dom);
    assert_eq!(bad_dev.error_path(), err_path);
    let err = h.xs.get(&err_path).expect("no error node at Xen's error path");
    assert!(err.starts_with("5 ring protocol violation: req_prod") && err.contains("more than a ring ahead"), "{err}");
    assert!(h.xs.get(&format!("{}/error", bad.be)).is_none(), "an error node inside the backend directory");
    assert_eq!(bad.release_rings(&mut h.g), 0, "the broken frontend's ring is unmapped");
    // The neighbour keeps working.
    good.read(&h.xs, &mut h.g, 0, 4096);
    let done = h.run(&mut good_dev, &mut good);
    assert!(done[0].data == data, "neighbour's data changed");
    assert_eq!(good_dev.state(), XenbusState::Connected);
}

#[test]
fn a_request_rewritten_after_publishing_is_acted_on_once() {
    // The frontend publishes a WRITE of page P to sector 8, then rewrites the slot right
    // after the backend's first read: sector → 2000, nr_segments → 11. A backend that
    // re-read the slot would write elsewhere, or walk 11 segments of garbage.
    let (mut h, mut dev, mut fe) = connected(Abi::Native);
    let data = pattern(9, 4096);
    let page = MemPage::new();
    page.set(0, &data);
    let gref = h.g.grant(fe.dom, &page, BACKEND, true);
    let req = rw(BLKIF_OP_WRITE, 42, 8, &[(gref, 0, 7)]);
    let idx = fe.raw(0, &encode_request(Abi::Native, &req), 42, BLKIF_OP_WRITE);
    let ring = fe.ring(0).unwrap();
    let slot_off = ring.slot_offset(idx);
    let evil = encode_request(Abi::Native, &rw(BLKIF_OP_WRITE, 42, 2000, &[(gref, 0, 7); 11]));
    let ring_page = fe.ring_pages[0][0].clone();
    let fired = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let f2 = fired.clone();
    ring_page.on_read(Box::new(move |mem, off, len| {
        // A read of the request slot (more than a 16-byte response: the frontend reads
        // its response from the same slot later): count it; rewrite after the first.
        if off <= slot_off && off + len > slot_off + 16 {
            if f2.get() == 0 {
                mem[slot_off..slot_off + 112].copy_from_slice(&evil[..112]);
            }
            f2.set(f2.get() + 1);
        }
    }));
    let done = h.run(&mut dev, &mut fe);
    assert_eq!(fired.get(), 1, "the slot was read exactly once");
    assert_eq!((done[0].id, done[0].status), (42, BLKIF_RSP_OKAY));
    let st = dev.connection().map(|c| c.stats).unwrap_or_default();
    assert_eq!(st.wr_sect, 8, "acted on one segment, not eleven");
    // The data is at sector 8, and sector 2000 is untouched.
    fe.read(&h.xs, &mut h.g, 8, 4096);
    fe.read(&h.xs, &mut h.g, 2000, 4096);
    let mut back = h.run(&mut dev, &mut fe);
    back.sort_by_key(|d| d.id);
    assert!(back[0].data == data, "data not at the sector first published");
    assert!(back[1].data.iter().all(|&b| b == 0), "the rewritten sector was written");
}

#[test]
fn an_indirect_page_rewritten_after_reading_cannot_change_the_segments() {
    let (mut h, mut dev, mut fe) = connected(Abi::Native);
    let data = pattern(11, 12 * 4096);
    // 12 data pages, descriptors in one indirect page.
    let pages: Vec<MemPage> = (0..12)
        .map(|i| {
            let p = MemPage::new();
            p.set(0, &data[i * 4096..(i + 1) * 4096]);
            p
        })
        .collect();
    let grefs: Vec<u32> = pages.iter().map(|p| h.g.grant(fe.dom, p, BACKEND, true)).collect();
    let ind = MemPage::new();
    for (i, g) in grefs.iter().enumerate() {
        ind.set(i * 8, &blkback::abi::encode_segment(&BlkifRequestSegment { gref: *g, first_sect: 0, last_sect: 7 }));
    }
    let ind_ref = h.g.grant(fe.dom, &ind, BACKEND, true);
    // After the first read of the descriptors, make every segment point at page 0.
    let g0 = grefs[0];
    ind.on_read(Box::new(move |mem, _, _| {
        for i in 0..12 {
            mem[i * 8..i * 8 + 4].copy_from_slice(&g0.to_le_bytes());
        }
    }));
    let req = RawRequest {
        operation: BLKIF_OP_INDIRECT,
        id: 5,
        body: RawBody::Indirect {
            indirect_op: BLKIF_OP_WRITE,
            nr_segments: 12,
            sector: 0,
            handle: 0,
            grefs: [ind_ref, 0, 0, 0, 0, 0, 0, 0],
        },
    };
    fe.raw(0, &encode_request(Abi::Native, &req), 5, BLKIF_OP_WRITE);
    let done = h.run(&mut dev, &mut fe);
    assert_eq!(done[0].status, BLKIF_RSP_OKAY);
    assert_eq!(ind.reads(), 1, "descriptors read once");
    fe.read(&h.xs, &mut h.g, 0, 6 * 4096);
    fe.read(&h.xs, &mut h.g, 48, 6 * 4096);
    let mut back = h.run(&mut dev, &mut fe);
    back.sort_by_key(|d| d.id);
    let got: Vec<u8> = back.into_iter().flat_map(|d| d.data).collect();
    assert!(got == data, "segments taken from the rewritten descriptors");
}

#[test]
fn a_flood_of_bogus_requests_leaves_another_frontend_correct() {
    let mut h = Harness::new();
    let opts = FrontendOpts { ring_page_order: 2, ..Default::default() };
    let (mut bad_dev, mut bad) = h.attach(2, 51712, 4 * MIB, false, DeviceConfig::default(), opts);
    let (mut good_dev, mut good) = h.attach(3, 51712, 4 * MIB, false, DeviceConfig::default(), FrontendOpts::default());
    assert!(h.connect(&mut bad_dev, &mut bad));
    assert!(h.connect(&mut good_dev, &mut good));
    let mut seed = 1u64;
    for round in 0..20u64 {
        // Fill the bad ring with random bytes (ids we will not look at).
        let free = bad.free_slots(0);
        for _ in 0..free {
            let mut slot = [0u8; MAX_SLOT];
            slot.copy_from_slice(&pattern(seed, MAX_SLOT));
            seed += 1;
            let id = u64::from_le_bytes(slot[8..16].try_into().unwrap());
            bad.raw(0, &slot, id, slot[0]);
        }
        let _ = h.run(&mut bad_dev, &mut bad);
        // Interleaved good I/O, verified.
        let data = pattern(1000 + round, 8192);
        good.rw(&h.xs, &mut h.g, true, round * 16, 8192, Some(&data), 0);
        good.read(&h.xs, &mut h.g, round * 16, 8192);
        let done = h.run(&mut good_dev, &mut good);
        assert!(done.iter().all(|d| d.status == BLKIF_RSP_OKAY));
        assert!(done.iter().any(|d| d.data == data), "round {round}: neighbour's data corrupted");
    }
    assert_eq!(bad_dev.state(), XenbusState::Connected, "bogus requests are errors, not disconnects");
    let st = bad_dev.connection().map(|c| c.stats).unwrap_or_default();
    assert!(st.errors() > 100, "errors counted: {}", st.errors());
    assert_eq!(h.g.counters().ro_violations, 0);
    assert_eq!(good_dev.state(), XenbusState::Connected);
}

#[test]
fn hostile_frontend_keys_are_refused_cleanly() {
    let cases: &[(&str, &str)] = &[
        ("ring-page-order", "5"),
        ("ring-page-order", "-1"),
        ("multi-queue-num-queues", "0"),
        ("multi-queue-num-queues", "1000000"),
        ("event-channel", "0x10"),
        ("ring-ref", "99999999999999"),
        ("protocol", "mips-abi"),
    ];
    for &(key, val) in cases {
        let mut h = Harness::new();
        let (mut dev, mut fe) = h.attach(2, 51712, MIB, false, DeviceConfig::default(), FrontendOpts::default());
        fe.connect(&mut h.xs, &mut h.g, &mut h.ev);
        h.xs.set(&format!("{}/{key}", fe.fe), val);
        h.update(&mut dev);
        assert_eq!(dev.state(), XenbusState::Closing, "{key}={val} was accepted");
        assert!(dev.connection().is_none());
        let err = h.xs.get(&dev.error_path()).unwrap_or_else(|| panic!("{key}={val}: no error node"));
        assert!(err.starts_with("22 "), "{key}={val}: {err}");
        // Removing the device removes its error node too.
        dev.remove(&mut h.xs, "t").unwrap();
        assert!(h.xs.get(&dev.error_path()).is_none(), "{key}={val}: the error node outlived the device");
        assert_eq!(h.g.counters().mapped_now, 0, "{key}={val}: a mapping leaked");
    }
}

/// Whole-disk discards are legal, and a RAM store zeroes what they name: a frontend filling
/// its ring with them must not make one `process()` zero the disk size times the ring
/// depth while a neighbour's 4 KiB read waits (the audit measured 103 ms for that read).
/// Work per call is bounded, the neighbour is answered in its first turn, the discards all
/// complete, and a write queued behind them lands after them.
#[test]
fn whole_disk_discards_are_zeroed_piecewise_and_do_not_stall_a_neighbour() {
    let mut h = Harness::new();
    let size = 16 * MIB;
    let store = RamStore::new(vec![0xABu8; size], false);
    let (mut a, mut fe_a) = h.attach_store(2, 51712, store, "w", DeviceConfig::default(), FrontendOpts::default());
    assert!(h.connect(&mut a, &mut fe_a));
    let (mut b, mut fe_b) = h.attach(3, 51712, MIB, false, DeviceConfig::default(), FrontendOpts::default());
    assert!(h.connect(&mut b, &mut fe_b));

    let sectors = size as u64 / 512;
    let n = fe_a.free_slots(0) as usize - 1;
    let discards: Vec<u64> = (0..n).map(|_| fe_a.simple(BLKIF_OP_DISCARD, 0, sectors, false)).collect();
    let data = pattern(9, 4096);
    let last = fe_a.rw(&h.xs, &mut h.g, true, 8, 4096, Some(&data), 0);
    fe_a.push();
    let read = fe_b.read(&h.xs, &mut h.g, 0, 4096);
    fe_b.push();

    // One turn of the service loop: each device once.
    a.process(&mut h.xs, &mut h.g, &mut h.ev);
    let first = a.store().unwrap().zeroed();
    assert!(first <= 8 * ZERO_PER_PASS, "one process() zeroed {first} bytes");
    b.process(&mut h.xs, &mut h.g, &mut h.ev);
    let got = fe_b.complete(&mut h.g);
    assert_eq!(got.len(), 1, "the neighbour's read was not answered in its first turn");
    assert_eq!((got[0].id, got[0].status), (read, BLKIF_RSP_OKAY));

    let mut done = fe_a.complete(&mut h.g);
    let mut turns = 1;
    while done.len() < n + 1 && turns < 1000 {
        let before = a.store().unwrap().zeroed();
        let r = a.process(&mut h.xs, &mut h.g, &mut h.ev);
        assert!(a.store().unwrap().zeroed() - before <= 8 * ZERO_PER_PASS);
        done.extend(fe_a.complete(&mut h.g));
        turns += 1;
        if !r.more && done.len() < n + 1 {
            panic!("the device went idle with {} of {} requests answered", done.len(), n + 1);
        }
    }
    assert_eq!(done.len(), n + 1, "not every request was answered in {turns} turns");
    assert!(done.iter().all(|d| d.status == BLKIF_RSP_OKAY));
    let ids: Vec<u64> = done.iter().map(|d| d.id).collect();
    assert_eq!(ids.last(), Some(&last), "the write overtook a discard before it");
    assert!(ids[..n].iter().zip(&discards).all(|(a, b)| a == b));
    assert_eq!(a.store().unwrap().zeroed(), n as u64 * size as u64);
    assert!(turns > 1, "all the zeroing happened in one turn");
    let disk = a.store().unwrap().backing();
    assert_eq!(&disk[4096..8192], &data[..], "the write queued after the discards was lost");
    assert!(disk[..4096].iter().chain(&disk[8192..]).all(|&x| x == 0), "a discarded byte is not zero");
}

/// A frontend's `protocol` of 4000 bytes with terminal escape sequences: refused, and what
/// reaches the error node (and the console line built from the same text) is short and
/// carries no control characters. Before: the whole value, raw, on every connect attempt.
#[test]
fn frontend_text_is_cut_and_escaped_before_it_is_reported() {
    let mut h = Harness::new();
    let (mut dev, mut fe) = h.attach(2, 51712, MIB, false, DeviceConfig::default(), FrontendOpts::default());
    fe.connect(&mut h.xs, &mut h.g, &mut h.ev);
    let hostile = format!("\u{1b}[2J\u{1b}]0;owned\u{7}{}", "x".repeat(4000));
    h.xs.set(&format!("{}/protocol", fe.fe), &hostile);
    h.update(&mut dev);
    assert_eq!(dev.state(), XenbusState::Closing);
    let err = h.xs.get(&dev.error_path()).expect("no error node").to_string();
    assert!(err.len() < 200, "{} bytes: {err}", err.len());
    assert!(!err.chars().any(char::is_control), "{err:?}");
    assert!(err.contains("unknown frontend protocol \"\\u{1b}[2J") && err.contains("(4014 bytes)"), "{err}");
    let why = dev.last_error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(why.len() < 200 && !why.chars().any(char::is_control), "{why:?}");
}

/// One frontend's turn is bounded by work, not by requests: with 16 MiB indirect requests
/// queued (legal with `indirect=4096`), one `process()` moves one of them (before: up to 8
/// passes of 32 MiB), and a neighbour's 4 KiB read is answered right after.
#[test]
fn a_turn_is_bounded_by_work_so_big_requests_do_not_starve_a_neighbour() {
    use blkback::engine::TURN_SEGMENTS;
    let mut h = Harness::new();
    let mut c = DeviceConfig::default();
    c.adv.max_indirect_segments = 4096;
    let opts = FrontendOpts { max_segments: 4096, ring_page_order: 1, ..Default::default() };
    let (mut a, mut fe_a) = h.attach(2, 51712, 20 * MIB, false, c, opts);
    assert!(h.connect(&mut a, &mut fe_a));
    let (mut b, mut fe_b) = h.attach(3, 51712, MIB, false, DeviceConfig::default(), FrontendOpts::default());
    assert!(h.connect(&mut b, &mut fe_b));
    let big = pattern(1, 16 * MIB);
    for _ in 0..4 {
        fe_a.write(&h.xs, &mut h.g, 0, &big);
    }
    fe_a.push();
    fe_b.read(&h.xs, &mut h.g, 0, 4096);
    fe_b.push();

    let r = a.process(&mut h.xs, &mut h.g, &mut h.ev);
    let moved = a.connection().unwrap().stats.wr_sect * 512;
    assert!(moved <= (TURN_SEGMENTS as u64 * 4096).max(16 * MIB as u64), "one turn moved {moved} bytes");
    assert!(r.more, "work is left: the frontend must get another turn");
    b.process(&mut h.xs, &mut h.g, &mut h.ev);
    let done = fe_b.complete(&mut h.g);
    assert_eq!((done.len(), done.first().map(|d| d.status)), (1, Some(BLKIF_RSP_OKAY)));
    // The rest is served in later turns.
    let mut got = fe_a.complete(&mut h.g).len();
    for _ in 0..10 {
        a.process(&mut h.xs, &mut h.g, &mut h.ev);
        got += fe_a.complete(&mut h.g).len();
    }
    assert_eq!(got, 4);
}

/// Garbage on queue 0 (indirect requests claiming 65535 segments) must not hold back the
/// same frontend's queue 1: refused requests cost what they are (1), not what they claim,
/// and passes start from a rotating queue (before: queue 1 waited 65 turns).
#[test]
fn garbage_on_one_queue_does_not_starve_another() {
    let mut h = Harness::new();
    let opts = FrontendOpts { queues: 2, ..Default::default() };
    let (mut dev, mut fe) = h.attach(2, 51712, MIB, false, DeviceConfig::default(), opts);
    assert!(h.connect(&mut dev, &mut fe));
    let n = fe.free_slots(0) - 1;
    let garbage: Vec<u64> = (0..u64::from(n)).map(|i| 1 << 40 | i).collect();
    for &id in &garbage {
        let raw = RawRequest {
            operation: BLKIF_OP_INDIRECT,
            id,
            body: RawBody::Indirect {
                indirect_op: BLKIF_OP_READ,
                nr_segments: 65535,
                sector: 0,
                handle: 0,
                grefs: [0; 8],
            },
        };
        fe.raw(0, &encode_request(Abi::Native, &raw), id, BLKIF_OP_READ);
    }
    // The mock frontend spreads its requests over the queues: the first goes to queue 0
    // (behind the garbage), the second to queue 1.
    fe.read(&h.xs, &mut h.g, 0, 4096);
    let on_q1 = fe.read(&h.xs, &mut h.g, 8, 4096);
    fe.push();
    dev.process(&mut h.xs, &mut h.g, &mut h.ev);
    let done = fe.complete(&mut h.g);
    let read = done.iter().find(|d| d.id == on_q1).expect("queue 1's read waited behind queue 0's garbage");
    assert_eq!(read.status, BLKIF_RSP_OKAY);
    let bad: Vec<_> = done.iter().filter(|d| garbage.contains(&d.id)).collect();
    assert_eq!(bad.len() as u32, n, "not every bad request was answered");
    assert!(bad.iter().all(|d| d.status == BLKIF_RSP_ERROR));
}
