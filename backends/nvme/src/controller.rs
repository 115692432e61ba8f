//! The controller: bring-up as the spec orders it ("Initialization", NVMe over PCIe), one
//! I/O queue pair, polled I/O, timeouts and resets.
//!
//! Bring-up: `CC.EN` = 0 and wait for `CSTS.RDY` = 0; admin queue attributes and bases;
//! `CC` = config | EN and wait for RDY = 1 (both within `CAP.TO`); Identify Controller;
//! Identify Namespace for each namespace (up to [`MAX_NAMESPACES`]); Set Features Number of
//! Queues (one pair); Create I/O Completion Queue 1 (interrupts off: polled) and Create
//! I/O Submission Queue 1. Every admin command has [`ADMIN_TIMEOUT_NS`].
//!
//! I/O: a command per [`Io`] (the caller cuts requests with `prp::runs` and the
//! controller's limits, [`Controller::max_pages`]); completions are collected by `poll`.
//! A command outstanding past [`IO_TIMEOUT_NS`], a fatal status (`CSTS.CFS`) or a
//! completion the device should not have written resets the controller: what it held
//! fails (the caller answers its frontends), and bring-up runs again, [`MAX_RESETS`] times
//! in a row at most before the controller is given up (`State::Failed`).
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use xen_hv::Count;

use crate::cmd::{
    admin, nvm, Command, IdentifyController, IdentifyNamespace, Status, CNS_CONTROLLER, CNS_NAMESPACE, FEAT_NUM_QUEUES,
};
use crate::prp::{self, Piece, PrpError};
use crate::queue::{BadCompletion, QueuePair, ENTRIES};
use crate::regs::{self, Cap};
use crate::{DmaAlloc, DmaPage, Mmio, PAGE};

/// Namespaces served at most (each becomes a disk).
pub const MAX_NAMESPACES: u32 = 16;
/// How long one admin command may take.
pub const ADMIN_TIMEOUT_NS: u64 = 5_000_000_000;
/// How long one I/O command may take before the controller is reset (Linux's
/// `nvme_io_timeout` default is 30 s).
pub const IO_TIMEOUT_NS: u64 = 30_000_000_000;
/// Resets in a row (without a command completing in between) before giving up.
pub const MAX_RESETS: u32 = 3;
/// PRP list pages kept for reuse.
const LIST_POOL: usize = 8;

/// Why the controller or a command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The controller did not become (not) ready, or a command did not complete, in time.
    Timeout(&'static str),
    /// The controller reported a fatal status (`CSTS.CFS`).
    Fatal,
    /// The device wrote a completion it should not have.
    Device(BadCompletion),
    /// The command completed with an error status.
    Status(Status),
    /// What the controller says of itself makes it unusable (no NVM command set, a queue
    /// size below 2...).
    Unusable(&'static str),
    /// Out of DMA pages of ours.
    NoMemory,
    /// The controller is not ready for I/O (bring-up, a reset, or given up).
    NotReady,
    /// The I/O is not one command (its pieces, its size, its namespace).
    Invalid(&'static str),
    /// The I/O queue is full (the caller waits for completions).
    Busy,
    /// The controller was reset with this command outstanding.
    Reset,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout(what) => write!(f, "the controller timed out ({what})"),
            Error::Fatal => f.write_str("the controller reported a fatal status"),
            Error::Device(b) => write!(f, "the controller wrote a bad completion ({b:?})"),
            Error::Status(s) => write!(f, "{s}"),
            Error::Unusable(why) => write!(f, "the controller is unusable: {why}"),
            Error::NoMemory => f.write_str("no DMA memory"),
            Error::NotReady => f.write_str("the controller is not ready"),
            Error::Invalid(why) => write!(f, "not one NVMe command: {why}"),
            Error::Busy => f.write_str("the I/O queue is full"),
            Error::Reset => f.write_str("the controller was reset with the command outstanding"),
        }
    }
}

/// Where bring-up is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started.
    Idle,
    /// `CC.EN` = 0 written, waiting for `CSTS.RDY` = 0.
    Disabling,
    /// `CC.EN` = 1 written, waiting for `CSTS.RDY` = 1.
    Enabling,
    /// Identify Controller outstanding.
    IdentifyController,
    /// Identify Namespace of this namespace outstanding.
    IdentifyNamespace(u32),
    /// Set Features Number of Queues outstanding.
    SetQueues,
    /// Create I/O Completion Queue outstanding.
    CreateCq,
    /// Create I/O Submission Queue outstanding.
    CreateSq,
    /// Serving I/O.
    Ready,
    /// Given up.
    Failed(Error),
}

/// One namespace, as a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace {
    /// Namespace id.
    pub nsid: u32,
    /// Logical blocks.
    pub blocks: u64,
    /// Bytes per logical block (512 or 4096).
    pub block_size: u32,
}

/// What one I/O command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Read into the pieces.
    Read,
    /// Write from the pieces; `fua`: durable before completion.
    Write {
        /// Force Unit Access.
        fua: bool,
    },
    /// Flush the volatile write cache.
    Flush,
    /// Write Zeroes over `blocks` blocks.
    WriteZeroes,
    /// Dataset Management, deallocate `blocks` blocks.
    Deallocate,
}

/// One I/O command's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Io {
    /// The caller's tag, handed back with the result.
    pub tag: u64,
    /// Namespace.
    pub nsid: u32,
    /// What to do.
    pub op: IoOp,
    /// First logical block.
    pub lba: u64,
    /// Logical blocks (Read and Write: the pieces' bytes over the block size).
    pub blocks: u32,
    /// The data (Read and Write): one contiguous run (`prp::runs`).
    pub data: Vec<Piece>,
}

#[derive(Debug)]
struct Pending<P> {
    tag: u64,
    list: Option<P>,
    deadline: u64,
    /// Bytes the device moves by DMA if the command succeeds.
    bytes: u64,
}

/// Counters of the driver, for statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Commands completed successfully.
    pub completed: u64,
    /// Commands completed with an error status.
    pub errors: u64,
    /// Bytes the device moved by DMA for successful reads and writes.
    pub dma_bytes: u64,
    /// Controller resets.
    pub resets: u64,
    /// Commands timed out.
    pub timeouts: u64,
}

/// One NVMe controller.
#[derive(Debug)]
pub struct Controller<M, P> {
    mmio: M,
    cap: Cap,
    state: State,
    deadline: u64,
    admin: Option<QueuePair<P>>,
    io: Option<QueuePair<P>>,
    /// The identify buffer (also the DSM range buffer of admin-time).
    buf: Option<P>,
    ident: Option<IdentifyController>,
    namespaces: Vec<Namespace>,
    lists: Vec<P>,
    pending: BTreeMap<u64, Pending<P>>,
    next: u64,
    done: Vec<(u64, Result<(), Error>)>,
    resets_in_a_row: u32,
    /// Counters.
    pub counters: Counters,
}

impl<M: Mmio, P: DmaPage> Controller<M, P> {
    /// A controller behind `mmio` (BAR0, mapped; the PCI command register's memory and
    /// bus-master bits set by the caller). Nothing is touched until `start`.
    pub fn new(mut mmio: M) -> Self {
        let cap = Cap::decode(mmio.read64(regs::CAP));
        Self {
            mmio,
            cap,
            state: State::Idle,
            deadline: 0,
            admin: None,
            io: None,
            buf: None,
            ident: None,
            namespaces: Vec::new(),
            lists: Vec::new(),
            pending: BTreeMap::new(),
            next: 1,
            done: Vec::new(),
            resets_in_a_row: 0,
            counters: Counters::default(),
        }
    }

    /// Where bring-up is.
    pub fn state(&self) -> State {
        self.state
    }

    /// The namespaces found (once `Ready`).
    pub fn namespaces(&self) -> &[Namespace] {
        &self.namespaces
    }

    /// Identify Controller's data (once identified).
    pub fn identity(&self) -> Option<IdentifyController> {
        self.ident
    }

    /// The registers (tests look at the mock through them).
    pub fn mmio(&mut self) -> &mut M {
        &mut self.mmio
    }

    /// Pages one command may carry: MDTS (in units of the minimum page size), and one PRP
    /// list's worth at most.
    pub fn max_pages(&self) -> usize {
        let list = prp::LIST_ENTRIES.saturating_add(1);
        match self.ident.map(|i| i.mdts) {
            None | Some(0) => list,
            Some(m) => {
                let bytes = (self.cap.mps_min).checked_shl(u32::from(m)).unwrap_or(u64::MAX);
                usize::try_from(bytes.checked_div(PAGE as u64).unwrap_or(0)).unwrap_or(list).clamp(1, list)
            }
        }
    }

    /// Whether FLUSH means something (a volatile write cache is present).
    pub fn has_cache(&self) -> bool {
        self.ident.is_some_and(|i| i.vwc)
    }

    /// Whether deallocation (DSM) and Write Zeroes are offered.
    pub fn can_discard(&self) -> (bool, bool) {
        self.ident.map_or((false, false), |i| (i.dsm, i.write_zeroes))
    }

    /// Starts bring-up (or a reset): disables the controller.
    pub fn start(&mut self, now: u64) {
        if !self.cap.nvm {
            self.state = State::Failed(Error::Unusable("no NVM command set"));
            return;
        }
        if self.cap.mps_min > PAGE as u64 {
            self.state = State::Failed(Error::Unusable("minimum page size above 4 KiB"));
            return;
        }
        let cc = self.mmio.read32(regs::CC);
        self.mmio.write32(regs::CC, cc & !regs::CC_EN);
        self.deadline = now.saturating_add(self.cap.timeout_ns.max(500_000_000));
        self.state = State::Disabling;
    }

    /// Moves bring-up on and collects completions. Call it every turn of the loop.
    pub fn poll<A: DmaAlloc<Page = P>>(&mut self, alloc: &mut A, now: u64) {
        match self.state {
            State::Idle | State::Failed(_) => {}
            State::Disabling => {
                if self.mmio.read32(regs::CSTS) & regs::CSTS_RDY == 0 {
                    if let Err(e) = self.enable(alloc, now) {
                        self.state = State::Failed(e);
                    }
                } else if now > self.deadline {
                    self.state = State::Failed(Error::Timeout("disable"));
                }
            }
            State::Enabling => {
                let csts = self.mmio.read32(regs::CSTS);
                if csts & regs::CSTS_CFS != 0 {
                    self.reset_or_fail(now, Error::Fatal);
                } else if csts & regs::CSTS_RDY != 0 {
                    self.admin_cmd(now, State::IdentifyController, admin::IDENTIFY, 0, [CNS_CONTROLLER, 0, 0, 0, 0, 0]);
                } else if now > self.deadline {
                    self.state = State::Failed(Error::Timeout("enable"));
                }
            }
            State::Ready => self.poll_io(now),
            _ => self.poll_admin(alloc, now),
        }
    }

    /// Results of finished I/O, as (tag, result).
    pub fn take_done(&mut self, out: &mut Vec<(u64, Result<(), Error>)>) {
        out.append(&mut self.done);
    }

    /// Commands outstanding.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    fn enable<A: DmaAlloc<Page = P>>(&mut self, alloc: &mut A, now: u64) -> Result<(), Error> {
        let entries = u16::try_from(self.cap.mqes).unwrap_or(u16::MAX).min(ENTRIES);
        if entries < 2 {
            return Err(Error::Unusable("queues of fewer than 2 entries"));
        }
        let admin = match self.admin.take() {
            Some(q) => {
                let (sq, cq) = q.into_pages();
                QueuePair::new(0, zeroed(sq)?, zeroed(cq)?, entries)
            }
            None => QueuePair::new(0, page(alloc)?, page(alloc)?, entries),
        };
        if self.buf.is_none() {
            self.buf = Some(page(alloc)?);
        }
        let (asq, acq) = admin.addrs();
        let size = u32::from(admin.entries().saturating_sub(1));
        self.mmio.write32(regs::AQA, size | (size << 16));
        self.mmio.write64(regs::ASQ, asq);
        self.mmio.write64(regs::ACQ, acq);
        self.admin = Some(admin);
        self.mmio.write32(regs::CC, regs::CC_CONFIG | regs::CC_EN);
        self.deadline = now.saturating_add(self.cap.timeout_ns.max(500_000_000));
        self.state = State::Enabling;
        Ok(())
    }

    /// Submits an admin command (with the identify buffer as its data) and moves to `next`.
    fn admin_cmd(&mut self, now: u64, next: State, opcode: u8, nsid: u32, cdw: [u32; 6]) {
        let prp1 = match opcode {
            admin::IDENTIFY => self.buf.as_ref().map_or(0, DmaPage::dma_addr),
            admin::CREATE_CQ | admin::CREATE_SQ => {
                let io = self.io.as_ref().map(QueuePair::addrs).unwrap_or_default();
                if opcode == admin::CREATE_CQ {
                    io.1
                } else {
                    io.0
                }
            }
            _ => 0,
        };
        let cmd = Command { opcode, nsid, prp1, cdw, ..Command::default() };
        let doorbell = self.cap.sq_doorbell(0);
        let ok = self.admin.as_mut().and_then(|q| q.submit(&mut self.mmio, doorbell, cmd, 0)).is_some();
        if !ok {
            self.state = State::Failed(Error::Busy);
            return;
        }
        self.deadline = now.saturating_add(ADMIN_TIMEOUT_NS);
        self.state = next;
    }

    fn poll_admin<A: DmaAlloc<Page = P>>(&mut self, alloc: &mut A, now: u64) {
        let mut got = Vec::new();
        let doorbell = self.cap.cq_doorbell(0);
        let r = match self.admin.as_mut() {
            Some(q) => q.reap(&mut self.mmio, doorbell, &mut got),
            None => Ok(0),
        };
        if let Err(b) = r {
            self.reset_or_fail(now, Error::Device(b));
            return;
        }
        let Some((_, c)) = got.pop() else {
            if self.mmio.read32(regs::CSTS) & regs::CSTS_CFS != 0 {
                self.reset_or_fail(now, Error::Fatal);
            } else if now > self.deadline {
                self.reset_or_fail(now, Error::Timeout("admin command"));
            }
            return;
        };
        if !c.status.ok() {
            self.state = State::Failed(Error::Status(c.status));
            return;
        }
        self.admin_done(alloc, now);
    }

    fn admin_done<A: DmaAlloc<Page = P>>(&mut self, alloc: &mut A, now: u64) {
        match self.state {
            State::IdentifyController => {
                let id = IdentifyController::decode(&self.read_buf());
                self.ident = Some(id);
                self.namespaces.clear();
                if id.nn == 0 {
                    self.state = State::Failed(Error::Unusable("no namespaces"));
                    return;
                }
                self.admin_cmd(now, State::IdentifyNamespace(1), admin::IDENTIFY, 1, [CNS_NAMESPACE, 0, 0, 0, 0, 0]);
            }
            State::IdentifyNamespace(nsid) => {
                let ns = IdentifyNamespace::decode(&self.read_buf());
                // Served: no metadata, 512-byte or 4 KiB blocks, a size (an inactive
                // namespace identifies as all zeroes).
                if ns.ms == 0 && (9..=12).contains(&ns.lbads) && ns.nsze > 0 {
                    self.namespaces.push(Namespace { nsid, blocks: ns.nsze, block_size: 1u32 << ns.lbads });
                }
                let last = self.ident.map_or(1, |i| i.nn.min(MAX_NAMESPACES));
                if nsid < last {
                    let n = nsid.saturating_add(1);
                    self.admin_cmd(
                        now,
                        State::IdentifyNamespace(n),
                        admin::IDENTIFY,
                        n,
                        [CNS_NAMESPACE, 0, 0, 0, 0, 0],
                    );
                } else {
                    // One submission and one completion queue (0's based counts).
                    self.admin_cmd(now, State::SetQueues, admin::SET_FEATURES, 0, [FEAT_NUM_QUEUES, 0, 0, 0, 0, 0]);
                }
            }
            State::SetQueues => {
                // DW0 (the queues allocated, 0's based) is at least one of each: what we need.
                let entries = self.admin.as_ref().map_or(2, QueuePair::entries);
                let io = match self.io.take() {
                    Some(q) => {
                        let (sq, cq) = q.into_pages();
                        zeroed(sq).and_then(|sq| Ok(QueuePair::new(1, sq, zeroed(cq)?, entries)))
                    }
                    None => page(alloc).and_then(|sq| Ok(QueuePair::new(1, sq, page(alloc)?, entries))),
                };
                let Ok(io) = io else {
                    self.state = State::Failed(Error::NoMemory);
                    return;
                };
                let qsize = u32::from(io.entries().saturating_sub(1)) << 16;
                self.io = Some(io);
                // QID 1, physically contiguous (one page), interrupts disabled: polled.
                self.admin_cmd(now, State::CreateCq, admin::CREATE_CQ, 0, [1 | qsize, 1, 0, 0, 0, 0]);
            }
            State::CreateCq => {
                let qsize = u32::from(self.io.as_ref().map_or(1, |q| q.entries().saturating_sub(1))) << 16;
                // QID 1 on CQ 1, physically contiguous.
                self.admin_cmd(now, State::CreateSq, admin::CREATE_SQ, 0, [1 | qsize, 1 | (1 << 16), 0, 0, 0, 0]);
            }
            State::CreateSq => {
                self.state = State::Ready;
            }
            _ => {}
        }
    }

    fn read_buf(&self) -> [u8; PAGE] {
        let mut b = [0u8; PAGE];
        if let Some(p) = &self.buf {
            if p.read(0, &mut b).is_err() {
                b = [0u8; PAGE];
            }
        }
        b
    }

    /// Submits one I/O command. On error the I/O comes back with why (nothing was sent).
    pub fn submit<A: DmaAlloc<Page = P>>(&mut self, alloc: &mut A, io: Io, now: u64) -> Result<(), (Io, Error)> {
        if self.state != State::Ready {
            return Err((io, Error::NotReady));
        }
        if !self.io.as_ref().is_some_and(QueuePair::has_room) {
            return Err((io, Error::Busy));
        }
        let Some(ns) = self.namespaces.iter().find(|n| n.nsid == io.nsid).copied() else {
            return Err((io, Error::Invalid("no such namespace")));
        };
        let end = io.lba.checked_add(u64::from(io.blocks));
        let ranged = matches!(io.op, IoOp::Read | IoOp::Write { .. } | IoOp::WriteZeroes | IoOp::Deallocate);
        if ranged && (io.blocks == 0 || io.blocks > 65536 || end.is_none_or(|e| e > ns.blocks)) {
            return Err((io, Error::Invalid("blocks outside the namespace")));
        }
        let nlb = io.blocks.saturating_sub(1);
        let slba = [(io.lba & 0xffff_ffff) as u32, (io.lba >> 32) as u32];
        let mut list = None;
        let cmd = match io.op {
            IoOp::Read | IoOp::Write { .. } => {
                if io.data.len() > self.max_pages() {
                    return Err((io, Error::Invalid("more pages than the controller takes (MDTS)")));
                }
                let want = u64::from(io.blocks).saturating_mul(u64::from(ns.block_size));
                let list_addr = if io.data.len() > 2 {
                    match self.list_page(alloc) {
                        Some(p) => {
                            let a = p.dma_addr();
                            list = Some(p);
                            a
                        }
                        None => return Err((io, Error::NoMemory)),
                    }
                } else {
                    0
                };
                let dp = match prp::build(&io.data, list_addr) {
                    Ok(d) if u64::from(d.bytes) == want => d,
                    Ok(_) => {
                        self.give_back(list);
                        return Err((io, Error::Invalid("data and block count differ")));
                    }
                    Err(e) => {
                        self.give_back(list);
                        return Err((io, Error::Invalid(prp_why(e))));
                    }
                };
                if let Some(p) = &list {
                    let mut bytes = Vec::with_capacity(dp.list.len().saturating_mul(8));
                    for a in &dp.list {
                        bytes.extend_from_slice(&a.to_le_bytes());
                    }
                    if p.write(0, &bytes).is_err() {
                        self.give_back(list);
                        return Err((io, Error::NoMemory));
                    }
                }
                let (opcode, fua) = match io.op {
                    IoOp::Write { fua } => (nvm::WRITE, fua),
                    _ => (nvm::READ, false),
                };
                let cdw12 = nlb | if fua { 1 << 30 } else { 0 };
                Command {
                    opcode,
                    nsid: io.nsid,
                    prp1: dp.prp1,
                    prp2: dp.prp2,
                    cdw: [slba[0], slba[1], cdw12, 0, 0, 0],
                    ..Command::default()
                }
            }
            IoOp::Flush => Command { opcode: nvm::FLUSH, nsid: io.nsid, ..Command::default() },
            IoOp::WriteZeroes => Command {
                opcode: nvm::WRITE_ZEROES,
                nsid: io.nsid,
                cdw: [slba[0], slba[1], nlb, 0, 0, 0],
                ..Command::default()
            },
            IoOp::Deallocate => {
                // One range (16 bytes: attributes, length in blocks, first block) in a page.
                let Some(p) = self.list_page(alloc) else { return Err((io, Error::NoMemory)) };
                let mut r = [0u8; 16];
                r[4..8].copy_from_slice(&io.blocks.to_le_bytes());
                r[8..16].copy_from_slice(&io.lba.to_le_bytes());
                if p.write(0, &r).is_err() {
                    self.give_back(Some(p));
                    return Err((io, Error::NoMemory));
                }
                let prp1 = p.dma_addr();
                list = Some(p);
                // NR = 0 (one range), AD (deallocate).
                Command { opcode: nvm::DSM, nsid: io.nsid, prp1, cdw: [0, 1 << 2, 0, 0, 0, 0], ..Command::default() }
            }
        };
        let key = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        let doorbell = self.cap.sq_doorbell(1);
        let sent = self.io.as_mut().and_then(|q| q.submit(&mut self.mmio, doorbell, cmd, key));
        if sent.is_none() {
            self.give_back(list);
            return Err((io, Error::Busy));
        }
        let bytes = match io.op {
            IoOp::Read | IoOp::Write { .. } => io.data.iter().map(|p| u64::from(p.len)).sum(),
            _ => 0,
        };
        self.pending.insert(key, Pending { tag: io.tag, list, deadline: now.saturating_add(IO_TIMEOUT_NS), bytes });
        Ok(())
    }

    fn poll_io(&mut self, now: u64) {
        let mut got = Vec::new();
        let doorbell = self.cap.cq_doorbell(1);
        let r = match self.io.as_mut() {
            Some(q) => q.reap(&mut self.mmio, doorbell, &mut got),
            None => Ok(0),
        };
        for (key, c) in got {
            let Some(p) = self.pending.remove(&key) else { continue };
            self.give_back(p.list);
            self.resets_in_a_row = 0;
            if c.status.ok() {
                self.counters.completed.inc();
                self.counters.dma_bytes.add_sat(p.bytes);
                self.done.push((p.tag, Ok(())));
            } else {
                self.counters.errors.inc();
                self.done.push((p.tag, Err(Error::Status(c.status))));
            }
        }
        if let Err(b) = r {
            self.reset_or_fail(now, Error::Device(b));
        } else if self.mmio.read32(regs::CSTS) & regs::CSTS_CFS != 0 {
            self.reset_or_fail(now, Error::Fatal);
        } else if self.pending.values().any(|p| now > p.deadline) {
            self.counters.timeouts.inc();
            self.reset_or_fail(now, Error::Timeout("I/O command"));
        }
    }

    /// Fails everything outstanding and resets, or gives up after `MAX_RESETS` in a row.
    fn reset_or_fail(&mut self, now: u64, why: Error) {
        let keys: Vec<u64> = self.pending.keys().copied().collect();
        for k in keys {
            if let Some(p) = self.pending.remove(&k) {
                self.give_back(p.list);
                self.done.push((p.tag, Err(Error::Reset)));
            }
        }
        for q in [self.admin.as_mut(), self.io.as_mut()].into_iter().flatten() {
            q.drain();
        }
        self.counters.resets.inc();
        self.resets_in_a_row.inc();
        if self.resets_in_a_row > MAX_RESETS {
            let cc = self.mmio.read32(regs::CC);
            self.mmio.write32(regs::CC, cc & !regs::CC_EN);
            self.state = State::Failed(why);
            return;
        }
        self.start(now);
    }

    fn list_page<A: DmaAlloc<Page = P>>(&mut self, alloc: &mut A) -> Option<P> {
        self.lists.pop().or_else(|| alloc.alloc())
    }

    fn give_back(&mut self, p: Option<P>) {
        if let Some(p) = p {
            if self.lists.len() < LIST_POOL {
                self.lists.push(p);
            }
        }
    }
}

fn page<A: DmaAlloc>(alloc: &mut A) -> Result<A::Page, Error> {
    alloc.alloc().ok_or(Error::NoMemory)
}

/// A queue page reused after a reset starts zeroed (no stale phase bits).
fn zeroed<P: DmaPage>(p: P) -> Result<P, Error> {
    p.write(0, &[0u8; PAGE]).map_err(|_| Error::NoMemory)?;
    Ok(p)
}

fn prp_why(e: PrpError) -> &'static str {
    match e {
        PrpError::Empty => "no data",
        PrpError::Misaligned => "a piece not aligned for PRPs",
        PrpError::NotContiguous => "pieces not contiguous",
        PrpError::TooLong => "more pages than one PRP list",
    }
}
