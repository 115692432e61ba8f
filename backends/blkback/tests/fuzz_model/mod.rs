//! The fuzz target's model (`fuzz/fuzz_targets/ring.rs` includes this file; so does the
//! corpus replay in `tests/fuzz_corpus.rs`): arbitrary bytes drive a mock frontend through
//! the whole engine: valid I/O checked against a model disk, raw slots, corrupted requests,
//! garbage indirect requests over all eight descriptor pages (up to 4096 segments), small
//! and whole-disk discards, the frontend closing and reconnecting with I/O in flight, bogus
//! `req_prod`, then teardown with no mapping left. Every `process()` call is held to work
//! bounds: bytes moved, bytes zeroed, grant hypercalls.
// The model's arithmetic and casts are on the fuzzer's own small values.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation, dead_code)]

use std::collections::BTreeMap;
use std::rc::Rc;

use blkback::abi::{encode_request, Abi, RawBody, RawRequest, MAX_SLOT};
use blkback::device::DeviceConfig;
use blkback::engine::TURN_SEGMENTS;
use blkback::store::{RamStore, ZERO_PER_PASS};
use blkback::testing::*;
use xen_sys_mini::io::blkif::*;
use xen_sys_mini::io::xenbus::XenbusState;

type FuzzDevice = blkback::device::Device<FakeMapping, RamStore<FrameBacking, Rc<FakeMapping>>>;

/// Reads the fuzzer's bytes as parameters; runs out gracefully.
struct Bytes<'a> {
    d: &'a [u8],
}

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.d.split_first() {
            Some((b, rest)) => {
                self.d = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    fn empty(&self) -> bool {
        self.d.is_empty()
    }
}

/// What one fuzz input did (for the corpus replay test's assertions).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FuzzReport {
    pub commands: u32,
    pub verified_reads: u32,
    pub responses: u32,
}

/// One fuzz case: a frontend driven by `data` ("mostly valid, rarely invalid": valid
/// reads and writes checked against a model, raw slots, corrupted requests, garbage
/// indirect pages, bogus ring indices, state changes), then teardown. Panics on any broken
/// invariant: unknown response ids, data that differs from the model on a clean run,
/// mappings or event channels left behind.
pub fn fuzz_ring(data: &[u8]) -> FuzzReport {
    let mut b = Bytes { d: data };
    let cfg_byte = b.u8();
    let abi = if cfg_byte & 1 == 1 { Abi::X86_32 } else { Abi::Native };
    let persistent = cfg_byte & 2 != 0;
    let copy = cfg_byte & 4 != 0;
    let order = u32::from((cfg_byte >> 3) & 3);
    let queues = 1 + u32::from((cfg_byte >> 5) & 1);
    // Advertise 4096 indirect segments (8 descriptor pages) for garbage requests to use.
    let big = cfg_byte & 0x40 != 0;
    // The swap path on the patched hypervisor's model, with a small scratch pool (8
    // frames: a request of more segments takes several rounds).
    let swap = cfg_byte & 0x80 != 0;
    let mut h = Harness::new();
    let mut cfg = DeviceConfig::default();
    cfg.adv.max_indirect_segments = if big { 4096 } else { 64 };
    cfg.max_inflight = 16;
    cfg.persistent_cap = 32;
    if copy {
        cfg.path = blkback::engine::DataPath::Copy;
    }
    if swap {
        cfg.path = blkback::engine::DataPath::Swap;
        h.g.swap_supported = true;
    }
    const DISK: usize = 1 << 20;
    let backing = FrameBacking::new(&mut h.g, DISK, 0x4_0000);
    let backing = if swap { backing.with_scratch(&mut h.g, 8, 0x6_0000) } else { backing };
    let store: RamStore<FrameBacking, Rc<FakeMapping>> = RamStore::new(backing, false);
    let opts = FrontendOpts { abi, ring_page_order: order, queues, persistent, max_segments: 64 };
    let (mut dev, mut fe) = h.attach_store(2, 51712, store, "w", cfg, opts);
    assert!(h.connect(&mut dev, &mut fe), "connect");
    let mut model = vec![0u8; DISK];
    let mut clean = true;
    let mut rep = FuzzReport::default();
    let mut reads: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    // blkif orders nothing across queues (nor overlapping writes in flight at once): a
    // read, or a write overlapping one in flight, is only issued once earlier writes are
    // done, so the model's order is the backend's.
    let mut writes_outstanding = false;
    let mut in_flight_writes: Vec<(usize, usize)> = Vec::new();
    let mut forged = false;
    while !b.empty() && rep.commands < 256 {
        rep.commands += 1;
        let cmd = b.u8() % 16;
        let q = usize::from(b.u8()) % (queues as usize);
        let overlap = {
            let mut p = Bytes { d: b.d };
            let pages = 1 + usize::from(p.u8() % 24);
            let off = usize::from(p.u8() % 8) * 512;
            let len = (pages * PAGE - off).min(DISK / 2);
            let s = (u64::from(p.u16()) % ((DISK - len) as u64 / 512)) as usize * 512;
            cmd < 4 && in_flight_writes.iter().any(|&(a, e)| s < e && a < s + len)
        };
        // Reads and discards wait for earlier writes and discards; writes wait only for
        // overlapping ones.
        if fe.free_slots(q) == 0
            || fe.free_slots(fe.next_queue()) == 0
            || (writes_outstanding && ((4..=7).contains(&cmd) || cmd == 11))
            || overlap
        {
            writes_outstanding = false;
            in_flight_writes.clear();
            let done = run_checked(&mut h, &mut dev, &mut fe);
            rep.responses += done.len() as u32;
            check_reads(&done, &mut reads, &model, clean, &mut rep);
        }
        match cmd {
            // Valid writes and reads (most of the input).
            0..=7 => {
                let pages = 1 + usize::from(b.u8() % 24);
                let off = usize::from(b.u8() % 8) * 512;
                let len = (pages * PAGE - off).min(DISK / 2);
                let sector = u64::from(b.u16()) % ((DISK - len) as u64 / 512);
                let write = cmd < 4;
                if write {
                    let d = pattern(u64::from(b.u16()), len);
                    fe.rw(&h.xs, &mut h.g, true, sector, len, Some(&d), off);
                    // A write that is refused (e.g. > 11 direct pages without indirect)
                    // leaves the model as it was: only successful ones count, checked below.
                    model_write(&mut model, sector, &d, &mut reads);
                    writes_outstanding = true;
                    in_flight_writes.push((sector as usize * 512, sector as usize * 512 + len));
                } else {
                    let id = fe.rw(&h.xs, &mut h.g, false, sector, len, None, off);
                    reads.insert(id, (sector as usize * 512, len));
                }
            }
            8 => {
                let mut slot = [0u8; MAX_SLOT];
                for x in slot.iter_mut() {
                    *x = b.u8();
                }
                let raw = blkback::abi::decode_request(abi, &slot);
                // A random READ may name any of our grants, the ring pages included, and
                // overwrite them with disk data: after that our own ring is garbage.
                if raw.operation == BLKIF_OP_READ || raw.operation == BLKIF_OP_INDIRECT {
                    forged = true;
                }
                fe.raw(q, &slot, raw.id, blkback::request::rsp_op_of(&raw));
                clean = false;
            }
            9 => {
                // A valid request with one byte changed, on a page of its own (never the
                // ring: a corrupted segment count can only reach garbage refs).
                let page = MemPage::new();
                let gref = h.g.grant(fe.dom, &page, BACKEND, false);
                let r = RawRequest {
                    operation: BLKIF_OP_READ,
                    id: b.u64(),
                    body: RawBody::Rw {
                        nr_segments: 1,
                        handle: 0,
                        sector: 0,
                        seg: [BlkifRequestSegment { gref, first_sect: 0, last_sect: 7 }; 11],
                    },
                };
                let mut slot = encode_request(abi, &r);
                let pos = usize::from(b.u8()) % abi.slot_size();
                slot[pos] ^= b.u8() | 1;
                let raw = blkback::abi::decode_request(abi, &slot);
                // The flipped byte may have turned our page's ref into the ring's.
                let ours = matches!(raw.body, RawBody::Rw { seg, .. } if seg[0].gref == gref);
                if raw.operation == BLKIF_OP_INDIRECT || (raw.operation == BLKIF_OP_READ && !ours) {
                    forged = true;
                }
                fe.raw(q, &slot, raw.id, blkback::request::rsp_op_of(&raw));
                clean = false;
            }
            10 => {
                // An indirect request whose descriptor pages (eight of them) are garbage.
                let mut grefs = [0u32; 8];
                for g in grefs.iter_mut() {
                    let page = MemPage::new();
                    let garbage: Vec<u8> = (0..PAGE).map(|_| b.u8()).collect();
                    page.set(0, &garbage);
                    *g = h.g.grant(fe.dom, &page, BACKEND, true);
                }
                let nseg = b.u16() % if big { 4097 } else { 80 };
                let r = RawRequest {
                    operation: BLKIF_OP_INDIRECT,
                    id: b.u64(),
                    body: RawBody::Indirect {
                        indirect_op: b.u8() % 3,
                        nr_segments: nseg,
                        sector: u64::from(b.u16()),
                        handle: 0,
                        grefs,
                    },
                };
                if let RawBody::Indirect { indirect_op: BLKIF_OP_READ, .. } = r.body {
                    forged = true;
                }
                let raw_bytes = encode_request(abi, &r);
                fe.raw(q, &raw_bytes, r.id, blkback::request::rsp_op_of(&r));
                clean = false;
            }
            11 => {
                let mut sector = u64::from(b.u16()) % (DISK as u64 / 512);
                let mut n = u64::from(b.u8());
                let secure = b.u8() & 1 == 1;
                if n == 0xFF {
                    // The whole disk (zeroed over several passes).
                    sector = 0;
                    n = (DISK / 512) as u64;
                }
                let op = if b.u8() & 1 == 1 { BLKIF_OP_DISCARD } else { BLKIF_OP_FLUSH_DISKCACHE };
                fe.simple(op, sector, n, secure);
                if op == BLKIF_OP_DISCARD && sector + n <= (DISK / 512) as u64 {
                    let s = sector as usize * 512;
                    let e = s + n as usize * 512;
                    model[s..e].fill(0);
                    reads.retain(|_, (o, l)| *o + *l <= s || *o >= e);
                    // A discard is a write for ordering purposes.
                    writes_outstanding = true;
                    in_flight_writes.push((s, e));
                }
            }
            12 => {
                // Bogus req_prod: far ahead disconnects the frontend; a little ahead makes
                // the backend consume stale slots. Either way, stop here.
                forged = true;
                let v = b.u32();
                if let Some(r) = fe.ring(q) {
                    let _ = r.force_req_prod(v);
                }
                clean = false;
                let _ = run_checked(&mut h, &mut dev, &mut fe);
                break;
            }
            13 => {
                // The frontend closes with I/O in flight and comes back (module reload):
                // nothing of the first connection may stay mapped or bound.
                if fe.outstanding() > 0 {
                    // What was in flight may or may not have reached the disk.
                    clean = false;
                }
                fe.set_state(&mut h.xs, XenbusState::Closing);
                h.update(&mut dev);
                fe.set_state(&mut h.xs, XenbusState::Closed);
                h.update(&mut dev);
                assert!(dev.connection().is_none(), "still connected after the frontend closed");
                assert_eq!(h.g.counters().mapped_now, 0, "mappings left after a close mid-I/O");
                assert_eq!(h.ev.bound_count(), 0, "event channels left after a close mid-I/O");
                fe.release_rings(&mut h.g);
                reads.clear();
                writes_outstanding = false;
                in_flight_writes.clear();
                fe.set_state(&mut h.xs, XenbusState::Initialising);
                h.update(&mut dev);
                assert!(h.connect(&mut dev, &mut fe), "reconnect after a close mid-I/O");
            }
            _ => {
                writes_outstanding = false;
                in_flight_writes.clear();
                let done = run_checked(&mut h, &mut dev, &mut fe);
                rep.responses += done.len() as u32;
                check_reads(&done, &mut reads, &model, clean, &mut rep);
            }
        }
    }
    let done = run_checked(&mut h, &mut dev, &mut fe);
    rep.responses += done.len() as u32;
    check_reads(&done, &mut reads, &model, clean, &mut rep);
    // A frontend that forged `req_prod` made the backend answer slots it never filled:
    // those answers are expected. Otherwise every response must match a request.
    assert!(forged || fe.bogus.is_empty(), "responses that match no outstanding request: {:?}", fe.bogus);
    // Teardown: the frontend closes; nothing of it may stay mapped or bound.
    fe.set_state(&mut h.xs, XenbusState::Closed);
    // First look: the closed frontend is notified and served until idle; next look: dropped.
    h.update(&mut dev);
    let _ = run_checked(&mut h, &mut dev, &mut fe);
    h.update(&mut dev);
    assert!(dev.connection().is_none());
    let c = h.g.counters();
    assert_eq!(c.mapped_now, 0, "mappings left after disconnect");
    assert_eq!(c.leaked, 0, "mappings dropped without unmap");
    assert_eq!(c.ro_violations, 0, "a write through a read-only mapping");
    assert_eq!(h.ev.bound_count(), 0, "event channels left bound");
    rep
}

/// `Harness::run` with every `process()` call held to its bounds: at most a turn's work
/// (`TURN_SEGMENTS`, plus the one request a pass always takes) moved, at most eight passes
/// of zeroing, and a bounded number of grant hypercalls (a proxy for time: each is a world
/// switch on Xen).
fn run_checked(h: &mut Harness, dev: &mut FuzzDevice, fe: &mut MockFrontend) -> Vec<Done> {
    fe.push();
    let mut out = Vec::new();
    for _ in 0..64 {
        let sect0 = dev.connection().map_or(0, |c| c.stats.rd_sect + c.stats.wr_sect);
        let zero0 = dev.store().map_or(0, RamStore::zeroed);
        let g0 = h.g.counters();
        let r = dev.process(&mut h.xs, &mut h.g, &mut h.ev);
        let moved = (dev.connection().map_or(sect0, |c| c.stats.rd_sect + c.stats.wr_sect) - sect0) * 512;
        assert!(moved <= ((TURN_SEGMENTS + 4096) * PAGE) as u64, "one process() moved {moved} bytes");
        let zeroed = dev.store().map_or(zero0, RamStore::zeroed) - zero0;
        assert!(zeroed <= 8 * ZERO_PER_PASS, "one process() zeroed {zeroed} bytes");
        let g1 = h.g.counters();
        let calls = (g1.map_calls + g1.unmap_calls + g1.copy_calls) - (g0.map_calls + g0.unmap_calls + g0.copy_calls);
        let done = fe.complete(&mut h.g);
        assert!(calls <= 32 + 2 * (done.len() as u64 + r.requests), "{calls} grant calls in one process()");
        out.extend(done);
        if !r.more && (fe.outstanding() == 0 || r.requests == 0) {
            break;
        }
    }
    out
}

/// The model follows writes in submission order; a read checks against the model as of
/// its completion, so reads overlapping a later write are dropped from checking.
fn model_write(model: &mut [u8], sector: u64, d: &[u8], reads: &mut BTreeMap<u64, (usize, usize)>) {
    let s = sector as usize * 512;
    if let Some(m) = model.get_mut(s..s + d.len()) {
        m.copy_from_slice(d);
    }
    reads.retain(|_, (o, l)| *o + *l <= s || *o >= s + d.len());
}

fn check_reads(
    done: &[Done],
    reads: &mut BTreeMap<u64, (usize, usize)>,
    model: &[u8],
    clean: bool,
    rep: &mut FuzzReport,
) {
    for d in done {
        if let Some((off, len)) = reads.remove(&d.id) {
            if clean && d.status == BLKIF_RSP_OKAY {
                assert!(
                    d.data.as_slice() == &model[off..off + len],
                    "read {:#x} of {len} bytes at {off} differs from the model",
                    d.id
                );
                rep.verified_reads += 1;
            }
        }
    }
}
