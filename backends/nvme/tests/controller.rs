//! The driver against the mock controller: bring-up in the spec's order, data by DMA
//! straight into the caller's pages (one page, two, a PRP list), flush, write zeroes,
//! deallocate, 4 KiB-block namespaces, the limits it must honour, and a device that hangs,
//! dies or writes a bad completion (reset, outstanding I/O failed, never a hang), with
//! every rule of the spec the mock checks held throughout.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use std::cell::RefCell;
use std::rc::Rc;

use nvme::prp::Piece;
use nvme::testing::*;
use nvme::{Controller, Error, Io, IoOp, State};
use proptest::prelude::*;
use xen_hv::fake::MemPage;

const MS: u64 = 1_000_000;

struct Bed {
    bus: Bus,
    dev: Rc<RefCell<MockController>>,
    ctl: TestController,
    now: u64,
}

impl Bed {
    fn new(setup: impl FnOnce(&mut MockController)) -> Self {
        let bus = Bus::new();
        let mut m = MockController::new(&bus, 8192);
        setup(&mut m);
        let dev = Rc::new(RefCell::new(m));
        let ctl = Controller::new(dev.clone());
        Bed { bus, dev, ctl, now: 1_000 * MS }
    }

    /// Polls until `State::Ready` (or another end) within `limit` polls of 1 ms.
    fn bring_up(&mut self) -> State {
        self.ctl.start(self.now);
        self.settle(200)
    }

    fn settle(&mut self, limit: usize) -> State {
        for _ in 0..limit {
            self.ctl.poll(&mut self.bus, self.now);
            match self.ctl.state() {
                State::Ready | State::Failed(_) => break,
                _ => self.now += MS,
            }
        }
        self.ctl.state()
    }

    /// Data pages on the bus, as a frontend's grant mappings would be.
    fn pages(&self, n: usize) -> Vec<(MemPage, u64)> {
        (0..n)
            .map(|_| {
                let p = MemPage::new();
                let a = self.bus.map(&p);
                (p, a)
            })
            .collect()
    }

    /// Submits and polls until its result.
    fn run(&mut self, io: Io) -> Result<(), Error> {
        let tag = io.tag;
        self.ctl.submit(&mut self.bus, io, self.now).map_err(|(_, e)| e)?;
        for _ in 0..100 {
            self.ctl.poll(&mut self.bus, self.now);
            let mut done = Vec::new();
            self.ctl.take_done(&mut done);
            if let Some((t, r)) = done.pop() {
                assert_eq!(t, tag);
                return r;
            }
            self.now += MS;
        }
        panic!("no completion");
    }

    fn clean(&self) {
        let v = &self.dev.borrow().violations;
        assert!(v.is_empty(), "the driver broke the spec: {v:?}");
    }
}

fn full(pages: &[(MemPage, u64)]) -> Vec<Piece> {
    pages.iter().map(|(_, a)| Piece { addr: *a, off: 0, len: 4096 }).collect()
}

fn rw(tag: u64, op: IoOp, lba: u64, blocks: u32, data: Vec<Piece>) -> Io {
    Io { tag, nsid: 1, op, lba, blocks, data }
}

#[test]
fn bring_up_follows_the_spec_and_finds_the_namespace() {
    let mut b = Bed::new(|_| {});
    assert_eq!(b.bring_up(), State::Ready);
    b.clean();
    let ns = b.ctl.namespaces();
    assert_eq!(ns.len(), 1);
    assert_eq!((ns[0].nsid, ns[0].blocks, ns[0].block_size), (1, 8192, 512));
    assert!(b.ctl.has_cache());
    assert_eq!(b.ctl.can_discard(), (true, true));
    // MDTS 5 with 4 KiB pages: 128 KiB, 32 pages.
    assert_eq!(b.ctl.max_pages(), 32);
}

#[test]
fn data_moves_by_dma_into_the_callers_pages_one_two_and_listed() {
    let mut b = Bed::new(|_| {});
    assert_eq!(b.bring_up(), State::Ready);
    for (n, lba) in [(1usize, 0u64), (2, 100), (5, 1000), (32, 4000)] {
        let src = b.pages(n);
        for (i, (p, _)) in src.iter().enumerate() {
            p.set(0, &vec![(n * 16 + i) as u8; 4096]);
        }
        let blocks = (n * 8) as u32;
        b.run(rw(1, IoOp::Write { fua: false }, lba, blocks, full(&src))).unwrap();
        let disk = b.dev.borrow().namespaces[0].data.clone();
        for i in 0..n {
            let at = (lba as usize + i * 8) * 512;
            assert!(disk[at..at + 4096].iter().all(|&x| x == (n * 16 + i) as u8), "{n} pages: page {i} on the disk");
        }
        let dst = b.pages(n);
        b.run(rw(2, IoOp::Read, lba, blocks, full(&dst))).unwrap();
        for (i, (p, _)) in dst.iter().enumerate() {
            assert_eq!(p.get(0, 4096), vec![(n * 16 + i) as u8; 4096], "{n} pages: read back page {i}");
        }
    }
    // A sector-sized piece at an offset (a blkif segment with first_sect 3).
    let one = b.pages(1);
    b.run(rw(3, IoOp::Read, 0, 1, vec![Piece { addr: one[0].1, off: 1536, len: 512 }])).unwrap();
    assert_eq!(one[0].0.get(1536, 512), vec![16u8; 512]);
    assert_eq!(b.ctl.counters.dma_bytes, 2 * (1 + 2 + 5 + 32) * 4096 + 512);
    assert_eq!(b.dev.borrow().dma_bytes, b.ctl.counters.dma_bytes, "driver and device agree on bytes moved");
    b.clean();
}

#[test]
fn flush_write_zeroes_and_deallocate() {
    let mut b = Bed::new(|_| {});
    assert_eq!(b.bring_up(), State::Ready);
    b.dev.borrow_mut().namespaces[0].data.fill(0xee);
    b.run(rw(1, IoOp::Flush, 0, 0, Vec::new())).unwrap();
    assert_eq!(b.dev.borrow().flushes, 1);
    b.run(rw(2, IoOp::WriteZeroes, 8, 16, Vec::new())).unwrap();
    b.run(rw(3, IoOp::Deallocate, 100, 50, Vec::new())).unwrap();
    let d = &b.dev.borrow().namespaces[0].data;
    assert!(d[8 * 512..24 * 512].iter().all(|&x| x == 0));
    assert!(d[100 * 512..150 * 512].iter().all(|&x| x == 0));
    assert_eq!(d[7 * 512], 0xee);
    assert_eq!(d[24 * 512], 0xee);
    assert_eq!(d[150 * 512], 0xee);
    b.clean();
}

#[test]
fn four_kib_blocks_and_several_namespaces() {
    let mut b = Bed::new(|m| {
        m.namespaces = vec![MockNs::new(1024, 12), MockNs::new(64, 9)];
    });
    assert_eq!(b.bring_up(), State::Ready);
    let ns: Vec<_> = b.ctl.namespaces().iter().map(|n| (n.nsid, n.blocks, n.block_size)).collect();
    assert_eq!(ns, [(1, 1024, 4096), (2, 64, 512)]);
    let p = b.pages(2);
    p[0].0.set(0, &[7u8; 4096]);
    p[1].0.set(0, &[8u8; 4096]);
    b.run(rw(1, IoOp::Write { fua: true }, 10, 2, full(&p))).unwrap();
    assert_eq!(b.dev.borrow().namespaces[0].data[10 * 4096 + 4096], 8);
    // Two blocks of 4 KiB are not one 512-byte sector's worth of data.
    let e = b.run(rw(2, IoOp::Read, 10, 1, full(&p)));
    assert_eq!(e, Err(Error::Invalid("data and block count differ")));
    let e = b.run(Io { nsid: 3, ..rw(4, IoOp::Flush, 0, 0, Vec::new()) });
    assert_eq!(e, Err(Error::Invalid("no such namespace")));
    b.clean();
}

#[test]
fn what_the_controller_cannot_take_is_refused_before_it_is_sent() {
    let mut b = Bed::new(|_| {});
    assert_eq!(b.bring_up(), State::Ready);
    let many = b.pages(33);
    assert_eq!(
        b.run(rw(1, IoOp::Read, 0, 33 * 8, full(&many))),
        Err(Error::Invalid("more pages than the controller takes (MDTS)"))
    );
    let p = b.pages(1);
    assert_eq!(b.run(rw(2, IoOp::Read, 8190, 8, full(&p))), Err(Error::Invalid("blocks outside the namespace")));
    let holes = vec![Piece { addr: many[0].1, off: 0, len: 1024 }, Piece { addr: many[1].1, off: 0, len: 512 }];
    assert_eq!(b.run(rw(3, IoOp::Read, 0, 3, holes)), Err(Error::Invalid("pieces not contiguous")));
    assert_eq!(b.dev.borrow().io_commands, 0, "nothing reached the device");
    b.clean();
}

#[test]
fn a_device_error_status_fails_that_command_only() {
    let mut b = Bed::new(|m| m.faults.media_error_lba = Some(40));
    assert_eq!(b.bring_up(), State::Ready);
    let p = b.pages(1);
    match b.run(rw(1, IoOp::Read, 40, 8, full(&p))) {
        Err(Error::Status(s)) => assert_eq!((s.sct, s.sc), (2, 0x81)),
        r => panic!("{r:?}"),
    }
    assert_eq!(b.run(rw(2, IoOp::Read, 48, 8, full(&p))), Ok(()));
    assert_eq!(b.ctl.state(), State::Ready);
    assert_eq!(b.ctl.counters.errors, 1);
    b.clean();
}

#[test]
fn a_hung_controller_times_out_is_reset_and_serves_again() {
    let mut b = Bed::new(|_| {});
    assert_eq!(b.bring_up(), State::Ready);
    b.dev.borrow_mut().faults.stall = true;
    let p = b.pages(1);
    b.ctl.submit(&mut b.bus, rw(9, IoOp::Read, 0, 8, full(&p)), b.now).unwrap();
    b.now += nvme::controller::IO_TIMEOUT_NS + MS;
    b.ctl.poll(&mut b.bus, b.now);
    let mut done = Vec::new();
    b.ctl.take_done(&mut done);
    assert_eq!(done, [(9, Err(Error::Reset))], "the stuck command fails, it does not hang");
    assert_eq!(b.ctl.counters.timeouts, 1);
    b.dev.borrow_mut().faults.stall = false;
    assert_eq!(b.settle(200), State::Ready, "bring-up ran again");
    assert_eq!(b.dev.borrow().resets, 1);
    assert_eq!(b.run(rw(10, IoOp::Read, 0, 8, full(&p))), Ok(()));
    b.clean();
}

#[test]
fn bad_completions_and_fatal_status_reset_the_controller() {
    for c in [Corruption::Cid, Corruption::SqId, Corruption::SqHead] {
        let mut b = Bed::new(|_| {});
        assert_eq!(b.bring_up(), State::Ready);
        b.dev.borrow_mut().faults.corrupt = Some(c);
        let p = b.pages(1);
        let r = b.run(rw(1, IoOp::Read, 0, 8, full(&p)));
        assert_eq!(r, Err(Error::Reset), "{c:?}");
        assert_eq!(b.settle(200), State::Ready, "{c:?}: back after the reset");
        assert_eq!(b.run(rw(2, IoOp::Read, 0, 8, full(&p))), Ok(()), "{c:?}");
    }
    let mut b = Bed::new(|_| {});
    assert_eq!(b.bring_up(), State::Ready);
    b.dev.borrow_mut().faults.fatal = true;
    b.ctl.poll(&mut b.bus, b.now);
    assert_ne!(b.ctl.state(), State::Ready);
    // Still fatal after every reset: given up, I/O refused at once.
    let end = b.settle(2000);
    assert_eq!(end, State::Failed(Error::Fatal));
    let p = b.pages(1);
    assert_eq!(b.run(rw(3, IoOp::Read, 0, 8, full(&p))), Err(Error::NotReady));
}

#[test]
fn a_controller_that_never_becomes_ready_is_given_up_in_time() {
    let mut b = Bed::new(|m| m.faults.never_ready = true);
    let t0 = b.now;
    assert_eq!(b.bring_up(), State::Enabling);
    assert_eq!(b.settle(5000), State::Failed(Error::Timeout("enable")));
    assert!(b.now - t0 <= 2_000 * MS, "within CAP.TO (1 s) plus polling");
}

#[test]
fn the_queue_never_overflows_and_every_command_gets_one_answer() {
    let mut b = Bed::new(|_| {});
    assert_eq!(b.bring_up(), State::Ready);
    let p = b.pages(1);
    // Stall so commands pile up: the driver stops at a full queue.
    b.dev.borrow_mut().faults.stall = true;
    let mut sent = 0;
    loop {
        match b.ctl.submit(&mut b.bus, rw(sent, IoOp::Read, 0, 8, full(&p)), b.now) {
            Ok(()) => sent += 1,
            Err((_, Error::Busy)) => break,
            Err((_, e)) => panic!("{e:?}"),
        }
    }
    assert_eq!(sent, 63, "64 entries: one kept empty (a full queue is tail + 1 == head)");
    b.dev.borrow_mut().resume();
    let mut done = Vec::new();
    for _ in 0..10 {
        b.ctl.poll(&mut b.bus, b.now);
        b.ctl.take_done(&mut done);
    }
    assert_eq!(done.len(), 63);
    // Room again, and the CQ wrapped correctly: another full round.
    for t in 100..163 {
        b.ctl.submit(&mut b.bus, rw(t, IoOp::Read, 0, 8, full(&p)), b.now).unwrap();
        b.ctl.poll(&mut b.bus, b.now);
        b.ctl.take_done(&mut done);
    }
    let mut tags: Vec<u64> = done.iter().map(|(t, _)| *t).collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), done.len(), "one answer each");
    assert!(done.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(done.len(), 126);
    assert_eq!(done.len() as u64, b.dev.borrow().io_commands);
    b.clean();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random reads and writes of 1 to 32 pages against a model disk: what is read is what
    /// was written, and the driver never breaks a rule.
    #[test]
    fn random_io_matches_a_model(ops in proptest::collection::vec((any::<bool>(), 0u64..1000, 1usize..=32, any::<u8>()), 1..40)) {
        let mut b = Bed::new(|_| {});
        prop_assert_eq!(b.bring_up(), State::Ready);
        let mut model = vec![0u8; 8192 * 512];
        for (i, (write, lba, n, fill)) in ops.into_iter().enumerate() {
            let pages = b.pages(n);
            let blocks = (n * 8) as u32;
            let at = lba as usize * 512;
            if write {
                for (j, (p, _)) in pages.iter().enumerate() {
                    p.set(0, &vec![fill.wrapping_add(j as u8); 4096]);
                }
                b.run(rw(i as u64, IoOp::Write { fua: false }, lba, blocks, full(&pages))).unwrap();
                for j in 0..n {
                    model[at + j * 4096..at + (j + 1) * 4096].fill(fill.wrapping_add(j as u8));
                }
            } else {
                b.run(rw(i as u64, IoOp::Read, lba, blocks, full(&pages))).unwrap();
                for (j, (p, _)) in pages.iter().enumerate() {
                    prop_assert_eq!(p.get(0, 4096), model[at + j * 4096..at + (j + 1) * 4096].to_vec());
                }
            }
            for (_, a) in pages {
                b.bus.unmap(a);
            }
        }
        prop_assert!(b.dev.borrow().violations.is_empty(), "{:?}", b.dev.borrow().violations);
    }
}
