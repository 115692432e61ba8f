//! A store on an NVMe namespace: blkif segments become NVMe commands whose PRP entries are
//! the frontend's grant-mapped pages themselves, so the controller DMAs straight into and
//! out of the guest's memory (no bounce buffer, no CPU copy: every completion reports 0
//! bytes moved by the CPU).
//!
//! Mapping: a READ or WRITE becomes one command per run of contiguous segments (cut at
//! holes and at the controller's MDTS, `nvme::prp::runs`); a preflush is a FLUSH sent with
//! the writes (NVMe's Flush covers writes completed before it, which is what a preflush
//! asks); FUA is the command's FUA bit; FLUSH is Flush when the controller has a volatile
//! write cache and completes at once when it has none (it is never refused: Linux 6.11+
//! blkfront drops flushes for good after one EOPNOTSUPP); a discard is Dataset Management
//! deallocate, else Write Zeroes, issued piecewise (at most [`DISCARD_BLOCKS`] blocks a
//! command, generated as the queue has room: a whole-disk discard holds no more heap than
//! one command's worth). On a 4 KiB-block namespace the sectors stay 512-byte units
//! (blkif), `sector-size` says 4096, and I/O not aligned to it is refused.
//!
//! Several namespaces of one controller are several stores sharing one [`NvmeDevice`]
//! (results are routed by command tag). A frontend that goes while its commands are on the
//! device does not get its pages back early: `cancel` returns what was not yet sent, and
//! what is in flight is dropped when the device completes it (its pages stay mapped until
//! the device is done with them, as Linux blkback waits for in-flight bios).
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;

use nvme::prp::{self, Piece};
use nvme::{Controller, DmaAlloc, Io as Cmd, IoOp as CmdOp, Mmio, State};

use super::{BlockStore, Completion, DiskInfo, FrameBacked, IoOp, ScratchFrames, StoreError, StoreIo};
use crate::hv::{Count, Page};

/// Blocks one discard command covers at most.
pub const DISCARD_BLOCKS: u32 = 65536;
/// Commands a store keeps waiting for room in the queue at most (past it, I/O is refused
/// with an error: the engine's in-flight bound keeps it far below).
const MAX_WAITING: usize = 1024;

/// One controller, shared by the stores of its namespaces.
pub struct NvmeDevice<M, A: DmaAlloc> {
    ctl: Controller<M, A::Page>,
    alloc: A,
    clock: fn() -> u64,
    results: BTreeMap<u64, Result<(), nvme::Error>>,
    next: u64,
}

impl<M, A: DmaAlloc> core::fmt::Debug for NvmeDevice<M, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("NvmeDevice")
    }
}

impl<M: Mmio, A: DmaAlloc> NvmeDevice<M, A> {
    /// Starts bring-up of the controller behind `mmio`, with DMA pages from `alloc` and the
    /// time from `clock` (ns).
    pub fn new(mmio: M, alloc: A, clock: fn() -> u64) -> Rc<RefCell<Self>> {
        let mut ctl = Controller::new(mmio);
        ctl.start(clock());
        Rc::new(RefCell::new(Self { ctl, alloc, clock, results: BTreeMap::new(), next: 1 }))
    }

    /// Moves the controller on and collects results.
    pub fn poll(&mut self) {
        let now = (self.clock)();
        self.ctl.poll(&mut self.alloc, now);
        let mut done = Vec::new();
        self.ctl.take_done(&mut done);
        for (tag, r) in done {
            self.results.insert(tag, r);
        }
    }

    /// The result of command `tag`, once the device has completed it.
    pub fn take_result(&mut self, tag: u64) -> Option<Result<(), nvme::Error>> {
        self.results.remove(&tag)
    }

    /// The controller (its state, namespaces, counters).
    pub fn controller(&self) -> &Controller<M, A::Page> {
        &self.ctl
    }

    /// The controller, mutably (tests reach the mock through it).
    pub fn controller_mut(&mut self) -> &mut Controller<M, A::Page> {
        &mut self.ctl
    }

    /// Sends `cmd` under a tag of the device's (the tag it returns); on failure the command
    /// comes back. Its result is for [`take_result`](Self::take_result) (the stores take
    /// theirs by tag).
    pub fn submit(&mut self, mut cmd: Cmd) -> Result<u64, (Cmd, nvme::Error)> {
        let tag = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        cmd.tag = tag;
        let now = (self.clock)();
        self.ctl.submit(&mut self.alloc, cmd, now).map(|()| tag)
    }
}

#[derive(Debug)]
struct Held<B> {
    io: StoreIo<B>,
    /// Commands not yet answered (sent or still to send).
    left: usize,
    error: Option<StoreError>,
}

/// A command waiting for room in the queue, or the rest of a discard.
#[derive(Debug)]
enum Waiting {
    Cmd(u64, Cmd),
    Discard { key: u64, op: CmdOp, lba: u64, blocks: u64 },
}

/// A segment buffer's bus address (a grant mapping's GFN, page-aligned), if it has one.
pub type BusAddr<B> = Box<dyn Fn(&B) -> Option<u64>>;

/// One namespace as a disk.
pub struct NvmeStore<M, A: DmaAlloc, B> {
    dev: Rc<RefCell<NvmeDevice<M, A>>>,
    nsid: u32,
    read_only: bool,
    /// A segment buffer's bus address (a grant mapping's GFN), if it has one.
    dma: BusAddr<B>,
    held: BTreeMap<u64, Held<B>>,
    /// Held I/O of a frontend that went, kept until the device is done with its pages.
    orphans: BTreeMap<u64, Held<B>>,
    /// Command tag → held key.
    cmds: BTreeMap<u64, u64>,
    waiting: VecDeque<Waiting>,
    out: Vec<Completion<B>>,
    next: u64,
    failure: Option<String>,
    /// I/O commands this store sent.
    pub commands: u64,
}

impl<M, A: DmaAlloc, B> core::fmt::Debug for NvmeStore<M, A, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NvmeStore(nsid {}, {} held)", self.nsid, self.held.len())
    }
}

impl<M: Mmio, A: DmaAlloc, B: Page> NvmeStore<M, A, B> {
    /// Namespace `nsid` of `dev`; `dma` gives a segment buffer's bus address.
    pub fn new(dev: Rc<RefCell<NvmeDevice<M, A>>>, nsid: u32, read_only: bool, dma: BusAddr<B>) -> Self {
        Self {
            dev,
            nsid,
            read_only,
            dma,
            held: BTreeMap::new(),
            orphans: BTreeMap::new(),
            cmds: BTreeMap::new(),
            waiting: VecDeque::new(),
            out: Vec::new(),
            next: 1,
            failure: None,
            commands: 0,
        }
    }

    fn namespace(&self) -> Option<nvme::Namespace> {
        self.dev.borrow().ctl.namespaces().iter().find(|n| n.nsid == self.nsid).copied()
    }

    /// The commands of one I/O, or why it cannot be served.
    fn plan(&self, io: &StoreIo<B>, key: u64) -> Result<Vec<Waiting>, StoreError> {
        let ns = self.namespace().ok_or(StoreError::Io)?;
        let bs = u64::from(ns.block_size);
        // The first block, for the ops that have one: an empty flush's sector means nothing
        // (Linux blkfront sends `blk_rq_pos` of a flush request, which is (sector_t)-1), and
        // refusing it would make Linux 6.11+ blkfront drop flushes for good.
        let lba = || {
            let byte = io.sector.checked_mul(512).ok_or(StoreError::OutOfRange)?;
            if !byte.is_multiple_of(bs) {
                return Err(StoreError::Unsupported);
            }
            byte.checked_div(bs).ok_or(StoreError::Io)
        };
        let cmd = |op: CmdOp, lba: u64, blocks: u32, data: Vec<Piece>| {
            Waiting::Cmd(key, Cmd { tag: 0, nsid: self.nsid, op, lba, blocks, data })
        };
        let (cache, (dsm, wz)) = {
            let d = self.dev.borrow();
            (d.ctl.has_cache(), d.ctl.can_discard())
        };
        let mut out = Vec::new();
        match io.op {
            IoOp::Read | IoOp::Write { .. } => {
                if matches!(io.op, IoOp::Write { .. }) && self.read_only {
                    return Err(StoreError::ReadOnly);
                }
                let mut pieces = Vec::new();
                pieces.try_reserve_exact(io.segs.len()).map_err(|_| StoreError::Io)?;
                for s in &io.segs {
                    let addr = (self.dma)(&s.buf).ok_or(StoreError::Unsupported)?;
                    pieces.push(Piece { addr, off: s.offset, len: s.len });
                }
                let max = self.dev.borrow().ctl.max_pages();
                let runs = prp::runs(&pieces, max).map_err(|_| StoreError::Unsupported)?;
                let (op, preflush) = match io.op {
                    IoOp::Write { preflush, fua } => (CmdOp::Write { fua }, preflush),
                    _ => (CmdOp::Read, false),
                };
                if preflush && cache {
                    out.push(cmd(CmdOp::Flush, 0, 0, Vec::new()));
                }
                let mut at = lba()?;
                for r in runs {
                    let run = pieces.get(r).unwrap_or_default().to_vec();
                    let bytes: u64 = run.iter().map(|p| u64::from(p.len)).sum();
                    if !bytes.is_multiple_of(bs) {
                        return Err(StoreError::Unsupported);
                    }
                    let blocks = bytes.checked_div(bs).ok_or(StoreError::Io)?;
                    out.push(cmd(op, at, u32::try_from(blocks).map_err(|_| StoreError::Io)?, run));
                    at = at.saturating_add(blocks);
                }
            }
            IoOp::Flush => {
                if cache {
                    out.push(cmd(CmdOp::Flush, 0, 0, Vec::new()));
                }
            }
            IoOp::Discard { .. } => {
                let sectors = io.nr_sectors.checked_mul(512).ok_or(StoreError::OutOfRange)?;
                if !sectors.is_multiple_of(bs) {
                    return Err(StoreError::Unsupported);
                }
                let blocks = sectors.checked_div(bs).ok_or(StoreError::Io)?;
                let op = match (dsm, wz) {
                    (true, _) => CmdOp::Deallocate,
                    (false, true) => CmdOp::WriteZeroes,
                    (false, false) => return Err(StoreError::Unsupported),
                };
                if blocks > 0 {
                    out.push(Waiting::Discard { key, op, lba: lba()?, blocks });
                }
            }
        }
        Ok(out)
    }

    /// Sends what waits while the queue has room.
    fn pump(&mut self) {
        while let Some(w) = self.waiting.pop_front() {
            let (key, cmd, rest) = match w {
                Waiting::Cmd(key, c) => (key, c, None),
                Waiting::Discard { key, op, lba, blocks } => {
                    let n = blocks.min(u64::from(DISCARD_BLOCKS));
                    let c = Cmd {
                        tag: 0,
                        nsid: self.nsid,
                        op,
                        lba,
                        blocks: u32::try_from(n).unwrap_or(1),
                        data: Vec::new(),
                    };
                    let rest = (blocks > n).then(|| Waiting::Discard {
                        key,
                        op,
                        lba: lba.saturating_add(n),
                        blocks: blocks.saturating_sub(n),
                    });
                    (key, c, rest)
                }
            };
            let sent = self.dev.borrow_mut().submit(cmd);
            match sent {
                Ok(tag) => {
                    self.commands.inc();
                    self.cmds.insert(tag, key);
                    if let Some(r) = rest {
                        // The rest of a discard counts as one more command of its I/O.
                        if let Some(h) = self.held.get_mut(&key) {
                            h.left.inc();
                        }
                        self.waiting.push_front(r);
                    }
                }
                Err((cmd, nvme::Error::Busy | nvme::Error::NotReady))
                    if !matches!(self.dev.borrow().ctl.state(), State::Failed(_)) =>
                {
                    // No room (or a reset): send it later.
                    self.waiting.push_front(match rest {
                        None => Waiting::Cmd(key, cmd),
                        Some(Waiting::Discard { key, op, blocks, .. }) => Waiting::Discard {
                            key,
                            op,
                            lba: cmd.lba,
                            blocks: blocks.saturating_add(u64::from(cmd.blocks)),
                        },
                        Some(w) => w,
                    });
                    return;
                }
                Err((_, _)) => self.finish(key, Some(StoreError::Io)),
            }
        }
    }

    /// One command of held I/O `key` is answered.
    fn finish(&mut self, key: u64, error: Option<StoreError>) {
        if let Some(h) = self.orphans.get_mut(&key) {
            h.left = h.left.saturating_sub(1);
            if h.left == 0 {
                self.orphans.remove(&key);
            }
            return;
        }
        let Some(h) = self.held.get_mut(&key) else { return };
        h.left = h.left.saturating_sub(1);
        if h.error.is_none() {
            h.error = error;
        }
        if h.left == 0 {
            if let Some(h) = self.held.remove(&key) {
                // Bytes moved by the CPU: none, the device did it.
                let r = h.error.map_or(Ok(0), Err);
                self.out.push((h.io, r));
            }
        }
    }

    fn collect(&mut self) {
        let mine: Vec<(u64, Result<(), nvme::Error>)> = {
            let mut d = self.dev.borrow_mut();
            let tags: Vec<u64> = self.cmds.keys().copied().filter(|t| d.results.contains_key(t)).collect();
            tags.into_iter().filter_map(|t| d.results.remove(&t).map(|r| (t, r))).collect()
        };
        for (tag, r) in mine {
            if let Some(key) = self.cmds.remove(&tag) {
                self.finish(key, r.err().map(|_| StoreError::Io));
            }
        }
        self.failure = match self.dev.borrow().ctl.state() {
            State::Failed(e) => Some(e.to_string()),
            _ => None,
        };
    }
}

impl<M, A: DmaAlloc, B> FrameBacked for NvmeStore<M, A, B> {}
impl<M, A: DmaAlloc, B> ScratchFrames for NvmeStore<M, A, B> {}

impl<M: Mmio, A: DmaAlloc, B: Page> BlockStore<B> for NvmeStore<M, A, B> {
    fn info(&self) -> DiskInfo {
        let ns = self.namespace();
        let bs = ns.map_or(512, |n| n.block_size);
        let (dsm, wz) = self.dev.borrow().ctl.can_discard();
        DiskInfo {
            // `sectors` is always in 512-byte units (blkif), whatever the block size.
            sectors: ns.map_or(0, |n| n.blocks.saturating_mul(u64::from(n.block_size)) / 512),
            sector_size: bs,
            physical_sector_size: bs,
            read_only: self.read_only,
            // Always offered: without a volatile cache a flush is done at once.
            flush: true,
            discard: (dsm || wz) && !self.read_only,
            discard_secure: false,
        }
    }

    fn submit(&mut self, io: StoreIo<B>) -> Result<(), (StoreIo<B>, StoreError)> {
        if self.failure.is_some() {
            return Err((io, StoreError::Io));
        }
        let key = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        let plan = match self.plan(&io, key) {
            Ok(p) => p,
            Err(e) => return Err((io, e)),
        };
        if self.waiting.len().saturating_add(plan.len()) > MAX_WAITING {
            return Err((io, StoreError::Io));
        }
        if plan.is_empty() {
            // Nothing to ask the device (a flush without a cache): done.
            self.out.push((io, Ok(0)));
            return Ok(());
        }
        self.held.insert(key, Held { io, left: plan.len(), error: None });
        self.waiting.extend(plan);
        self.pump();
        Ok(())
    }

    fn complete(&mut self, out: &mut Vec<Completion<B>>) {
        self.dev.borrow_mut().poll();
        self.collect();
        self.pump();
        out.append(&mut self.out);
    }

    fn poll(&mut self) {
        self.dev.borrow_mut().poll();
        self.collect();
        self.pump();
    }

    fn ready(&self) -> bool {
        self.dev.borrow().ctl.state() == State::Ready && self.namespace().is_some()
    }

    fn has_work(&self) -> bool {
        // Polled: while commands are on the device, the loop keeps looking.
        !self.held.is_empty() || !self.orphans.is_empty()
    }

    fn failed(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let d = self.dev.borrow();
        let c = d.ctl.counters;
        alloc::vec![
            ("nvme_commands", self.commands),
            ("nvme_dma_bytes", c.dma_bytes),
            ("nvme_errors", c.errors),
            ("nvme_resets", c.resets),
            ("nvme_timeouts", c.timeouts),
        ]
    }

    fn cancel(&mut self, out: &mut Vec<StoreIo<B>>) {
        // What was not sent goes back now; what is on the device waits for it.
        self.waiting.clear();
        let keys: Vec<u64> = self.held.keys().copied().collect();
        for k in keys {
            let Some(mut h) = self.held.remove(&k) else { continue };
            let sent = self.cmds.values().filter(|v| **v == k).count();
            if sent == 0 {
                out.push(h.io);
            } else {
                h.left = sent;
                self.orphans.insert(k, h);
            }
        }
        out.extend(self.out.drain(..).map(|(io, _)| io));
    }
}
