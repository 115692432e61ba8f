//! The `nvme_completion` fuzz model (shared by `fuzz/fuzz_targets/nvme_completion.rs` and the
//! corpus replay): a hostile device writes arbitrary completions on the I/O queue for
//! commands the driver submitted. Whatever it writes, the driver must not panic, must
//! answer each command at most once, must keep its own counts straight, and once the clock
//! passes the I/O timeout must have answered every command (reset, not hang).
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation, dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;

use nvme::prp::Piece;
use nvme::testing::*;
use nvme::{Controller, Io, IoOp, State};
use xen_hv::fake::MemPage;

const MS: u64 = 1_000_000;

pub fn nvme_completion(data: &[u8]) {
    let bus = Bus::new();
    let dev = Rc::new(RefCell::new(MockController::new(&bus, 4096)));
    let mut ctl: TestController = Controller::new(dev.clone());
    let mut bus2 = bus.clone();
    let mut now = 1_000 * MS;
    ctl.start(now);
    for _ in 0..100 {
        ctl.poll(&mut bus2, now);
        if ctl.state() == State::Ready {
            break;
        }
        now += MS;
    }
    assert_eq!(ctl.state(), State::Ready);
    let (n, rest) = data.split_first().map_or((0, &[][..]), |(n, r)| (usize::from(*n % 48) + 1, r));
    dev.borrow_mut().faults.hostile = Some(rest.iter().copied().collect::<VecDeque<u8>>());
    let page = MemPage::new();
    let addr = bus.map(&page);
    let mut submitted = BTreeSet::new();
    let mut answered = BTreeSet::new();
    let mut done = Vec::new();
    for t in 0..n as u64 {
        let io = Io {
            tag: t,
            nsid: 1,
            op: IoOp::Read,
            lba: t * 8,
            blocks: 8,
            data: vec![Piece { addr, off: 0, len: 4096 }],
        };
        if ctl.submit(&mut bus2, io, now).is_ok() {
            submitted.insert(t);
        }
        ctl.poll(&mut bus2, now);
        ctl.take_done(&mut done);
    }
    for round in 0..3 {
        now += if round == 2 { nvme::controller::IO_TIMEOUT_NS + MS } else { MS };
        for _ in 0..50 {
            ctl.poll(&mut bus2, now);
        }
        ctl.take_done(&mut done);
    }
    for (t, _) in &done {
        assert!(submitted.contains(t), "an answer for tag {t}, never submitted");
        assert!(answered.insert(*t), "tag {t} answered twice");
    }
    assert_eq!(ctl.outstanding(), submitted.len() - answered.len());
    assert_eq!(answered, submitted, "past the timeout every command is answered");
}
