//! Property tests. (1) Build a valid request, corrupt exactly one field, and expect exactly
//! the error that field causes, through the byte encoding of both ABIs. (2) Random I/O
//! through the whole engine against a model disk, on every data path.
// Casts here are on the tests' own small values.
#![allow(clippy::cast_possible_truncation)]
use blkback::abi::{decode_request, encode_request, Abi, RawBody, RawRequest};
use blkback::device::DeviceConfig;
use blkback::engine::DataPath;
use blkback::request::{validate, validate_segments, Invalid, Limits, Segments};
use blkback::store::RamStore;
use blkback::testing::*;
use proptest::prelude::*;
use xen_sys_mini::io::blkif::*;

const CAP: u64 = 1 << 20; // sectors

fn limits() -> Limits {
    Limits {
        capacity: CAP,
        read_only: false,
        max_indirect_segments: 256,
        flush: true,
        barrier: true,
        discard: true,
        discard_secure: false,
    }
}

#[derive(Debug, Clone)]
enum Corruption {
    Op(u8),
    SegmentCount(u8),
    FirstAfterLast(usize),
    LastBeyondPage(usize, u8),
    Sector(u64),
    ReadOnly,
    IndirectOp(u8),
    IndirectCount(u16),
    SecureDiscard,
}

fn valid_rw() -> impl Strategy<Value = (u8, u64, u64, Vec<(u32, u8, u8)>)> {
    (
        prop_oneof![Just(BLKIF_OP_READ), Just(BLKIF_OP_WRITE)],
        any::<u64>(),
        0..CAP - 100,
        prop::collection::vec((any::<u32>(), 0u8..8).prop_flat_map(|(g, f)| (Just(g), Just(f), f..8u8)), 1..=11),
    )
        .prop_map(|(op, id, sector, segs)| (op, id, sector, segs))
}

fn raw_rw(op: u8, id: u64, sector: u64, segs: &[(u32, u8, u8)]) -> RawRequest {
    let mut seg = [BlkifRequestSegment::default(); 11];
    for (d, &(gref, first_sect, last_sect)) in seg.iter_mut().zip(segs) {
        *d = BlkifRequestSegment { gref, first_sect, last_sect };
    }
    RawRequest { operation: op, id, body: RawBody::Rw { nr_segments: segs.len() as u8, handle: 0, sector, seg } }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn one_corrupted_field_gives_exactly_its_error(
        (op, id, sector, segs) in valid_rw(),
        c in prop_oneof![
            (7u8..=255).prop_filter("not a known op", |o| *o != BLKIF_OP_INDIRECT).prop_map(Corruption::Op),
            prop_oneof![Just(0u8), 12u8..=255].prop_map(Corruption::SegmentCount),
            (0usize..11).prop_map(Corruption::FirstAfterLast),
            ((0usize..11), (8u8..=255)).prop_map(|(i, l)| Corruption::LastBeyondPage(i, l)),
            prop_oneof![Just(0u64), any::<u64>()].prop_map(Corruption::Sector),
            Just(Corruption::ReadOnly),
            (2u8..=255).prop_map(Corruption::IndirectOp),
            prop_oneof![Just(0u16), 257u16..=u16::MAX].prop_map(Corruption::IndirectCount),
            Just(Corruption::SecureDiscard),
        ],
        abi in prop_oneof![Just(Abi::Native), Just(Abi::X86_32)],
    ) {
        let mut lim = limits();
        let mut raw = raw_rw(op, id, sector, &segs);
        // The uncorrupted request is valid.
        let ok = validate(&decode_request(abi, &encode_request(abi, &raw)), &lim);
        prop_assert!(ok.is_ok(), "valid request refused: {ok:?}");
        let n = segs.len();
        let expected = match c {
            Corruption::Op(o) => { raw.operation = o; raw.body = RawBody::Other; Invalid::Unsupported(o) }
            Corruption::SegmentCount(k) => {
                if let RawBody::Rw { nr_segments, .. } = &mut raw.body { *nr_segments = k; }
                Invalid::BadSegmentCount(u16::from(k))
            }
            Corruption::FirstAfterLast(i) => {
                let i = i % n;
                if let RawBody::Rw { seg, .. } = &mut raw.body { seg[i].first_sect = 7; seg[i].last_sect = 6; }
                Invalid::FirstAfterLast { index: i as u16 }
            }
            Corruption::LastBeyondPage(i, l) => {
                let i = i % n;
                if let RawBody::Rw { seg, .. } = &mut raw.body { seg[i].last_sect = l; }
                Invalid::BeyondPage { index: i as u16 }
            }
            Corruption::Sector(delta) => {
                // The first start sector that no longer fits, or anything past it.
                let total: u64 = segs.iter().map(|&(_, f, l)| u64::from(l - f) + 1).sum();
                if let RawBody::Rw { sector, .. } = &mut raw.body { *sector = (CAP - total + 1).saturating_add(delta); }
                Invalid::BeyondCapacity
            }
            Corruption::ReadOnly => {
                lim.read_only = true;
                raw.operation = BLKIF_OP_WRITE;
                Invalid::ReadOnly
            }
            Corruption::IndirectOp(o) => {
                raw = RawRequest { operation: BLKIF_OP_INDIRECT, id, body: RawBody::Indirect { indirect_op: o, nr_segments: 12, sector, handle: 0, grefs: [8; 8] } };
                Invalid::BadIndirectOp(o)
            }
            Corruption::IndirectCount(k) => {
                raw = RawRequest { operation: BLKIF_OP_INDIRECT, id, body: RawBody::Indirect { indirect_op: BLKIF_OP_READ, nr_segments: k, sector, handle: 0, grefs: [8; 8] } };
                Invalid::BadSegmentCount(k)
            }
            Corruption::SecureDiscard => {
                raw = RawRequest { operation: BLKIF_OP_DISCARD, id, body: RawBody::Discard { flag: BLKIF_DISCARD_SECURE, handle: 0, sector, nr_sectors: 8 } };
                Invalid::SecureDiscardUnsupported
            }
        };
        let got = validate(&decode_request(abi, &encode_request(abi, &raw)), &lim);
        prop_assert_eq!(got, Err(expected));
        // Whatever the error, the id survives for the response.
        prop_assert_eq!(decode_request(abi, &encode_request(abi, &raw)).id, id);
    }

    #[test]
    fn indirect_segment_lists_are_checked_like_direct_ones(
        segs in prop::collection::vec((any::<u32>(), any::<u8>(), any::<u8>()), 1..300),
        sector in 0..CAP,
    ) {
        let raw: Vec<BlkifRequestSegment> = segs.iter().map(|&(gref, first_sect, last_sect)| BlkifRequestSegment { gref, first_sect, last_sect }).collect();
        let r = validate_segments(&raw, sector, &limits());
        let first_bad = raw.iter().position(|s| s.last_sect >= 8 || s.first_sect > s.last_sect);
        let total: u64 = raw.iter().map(|s| u64::from(s.last_sect.wrapping_sub(s.first_sect)) + 1).sum();
        match first_bad {
            Some(i) if raw[i].last_sect >= 8 => prop_assert_eq!(r, Err(Invalid::BeyondPage { index: i as u16 })),
            Some(i) => prop_assert_eq!(r, Err(Invalid::FirstAfterLast { index: i as u16 })),
            None if sector + total > CAP => prop_assert_eq!(r, Err(Invalid::BeyondCapacity)),
            None => prop_assert_eq!(r.map(|v| v.len()), Ok(raw.len())),
        }
    }

    #[test]
    fn indirect_requests_need_exactly_the_pages_their_count_needs(count in 1u16..=256, sector in 0..CAP - 2048) {
        let raw = RawRequest { operation: BLKIF_OP_INDIRECT, id: 1, body: RawBody::Indirect { indirect_op: BLKIF_OP_WRITE, nr_segments: count, sector, handle: 0, grefs: [1, 2, 3, 4, 5, 6, 7, 8] } };
        let r = validate(&raw, &limits()).unwrap();
        match r.segs {
            Segments::Indirect { pages, count: c } => {
                prop_assert_eq!(c, count);
                prop_assert_eq!(pages.len(), usize::from(count).div_ceil(512));
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }
}

#[derive(Debug, Clone)]
enum IoCmd {
    Write { sector: u64, pages: usize, off: usize, seed: u64 },
    Read { sector: u64, pages: usize, off: usize },
    Discard { sector: u64, n: u64 },
    Flush,
}

fn io_cmd() -> impl Strategy<Value = IoCmd> {
    prop_oneof![
        4 => (0u64..1800, 1usize..=20, 0usize..8, any::<u64>()).prop_map(|(sector, pages, off, seed)| IoCmd::Write { sector, pages, off: off * 512, seed }),
        4 => (0u64..1800, 1usize..=20, 0usize..8).prop_map(|(sector, pages, off)| IoCmd::Read { sector, pages, off: off * 512 }),
        1 => (0u64..1800, 1u64..200).prop_map(|(sector, n)| IoCmd::Discard { sector, n }),
        1 => Just(IoCmd::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Every read returns what the model disk holds, on every data path and layout, and
    /// nothing stays mapped afterwards.
    #[test]
    fn random_io_matches_a_model_disk(
        cmds in prop::collection::vec(io_cmd(), 1..40),
        path in prop_oneof![Just(0u8), Just(1), Just(2)],
        abi in prop_oneof![Just(Abi::Native), Just(Abi::X86_32)],
        order in 0u32..3,
    ) {
        const DISK: usize = 2 << 20;
        let mut h = Harness::new();
        let mut c = DeviceConfig::default();
        c.adv.max_indirect_segments = 32;
        c.path = if path == 2 { DataPath::Copy } else { DataPath::Map };
        let opts = FrontendOpts { abi, ring_page_order: order, queues: 1, persistent: path == 1, max_segments: 32 };
        let backing = FrameBacking::new(&mut h.g, DISK, 0x8000);
        let store: RamStore<FrameBacking, _> = RamStore::new(backing, false);
        let (mut dev, mut fe) = h.attach_store(2, 51712, store, "w", c, opts);
        prop_assert!(h.connect(&mut dev, &mut fe));
        let mut model = vec![0u8; DISK];
        for cmd in cmds {
            match cmd {
                IoCmd::Write { sector, pages, off, seed } => {
                    let len = pages * 4096 - off;
                    let d = pattern(seed, len);
                    fe.rw(&h.xs, &mut h.g, true, sector, len, Some(&d), off);
                    let done = h.run(&mut dev, &mut fe);
                    prop_assert_eq!(done[0].status, BLKIF_RSP_OKAY);
                    model[sector as usize * 512..][..len].copy_from_slice(&d);
                }
                IoCmd::Read { sector, pages, off } => {
                    let len = pages * 4096 - off;
                    fe.rw(&h.xs, &mut h.g, false, sector, len, None, off);
                    let done = h.run(&mut dev, &mut fe);
                    prop_assert_eq!(done[0].status, BLKIF_RSP_OKAY);
                    prop_assert!(done[0].data == model[sector as usize * 512..][..len], "read at sector {} differs", sector);
                }
                IoCmd::Discard { sector, n } => {
                    fe.simple(BLKIF_OP_DISCARD, sector, n, false);
                    let done = h.run(&mut dev, &mut fe);
                    prop_assert_eq!(done[0].status, BLKIF_RSP_OKAY);
                    model[sector as usize * 512..][..n as usize * 512].fill(0);
                }
                IoCmd::Flush => {
                    fe.simple(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, false);
                    prop_assert_eq!(h.run(&mut dev, &mut fe)[0].status, BLKIF_RSP_OKAY);
                }
            }
        }
        fe.set_state(&mut h.xs, xen_sys_mini::io::xenbus::XenbusState::Closed);
        // Notified and kept until idle, then dropped on the next look.
        h.update(&mut dev);
        h.update(&mut dev);
        prop_assert!(dev.connection().is_none());
        prop_assert_eq!(h.g.counters().mapped_now, 0);
        prop_assert_eq!(h.g.counters().leaked, 0);
        prop_assert_eq!(h.g.counters().ro_violations, 0);
    }
}
