//! A mock NVMe controller (feature `test-utils`) that behaves as the NVMe Base
//! Specification says a controller does, and checks that the driver does what it must:
//! - registers: `AQA`/`ASQ`/`ACQ` written only while disabled, page-aligned queue bases,
//!   `CC.IOSQES` = 6, `CC.IOCQES` = 4 and a supported `CC.MPS` when enabling (else
//!   `CSTS.CFS`), `CSTS.RDY` following `CC.EN` after a few reads;
//! - doorbells: a tail or head inside the queue, a CQ head never past what was posted;
//! - commands: no fused operations or SGLs, a command id not reused while its completion
//!   is unconsumed, PRP1 dword-aligned, PRP2 and list entries page-aligned and mapped on
//!   the bus, transfers within MDTS, I/O queues created CQ first with sizes within MQES;
//! - status codes for what a host may legally get wrong (LBA out of range, an invalid
//!   namespace, an unsupported opcode).
//!
//! Rule breaches are recorded in `violations` (tests assert it stays empty); faults can be
//! injected (`stall`, `fatal`, `corrupt`, `media_error_lba`). DMA reaches pages through
//! the [`Bus`], which is also the driver's [`DmaAlloc`].
// Test scaffolding: the arithmetic and casts below are on the mock's own bounded values.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::missing_panics_doc,
    clippy::manual_is_multiple_of
)]

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use xen_hv::fake::MemPage;
use xen_hv::{MemError, Page};

use crate::cmd::{admin, nvm, Command, Completion, Status};
use crate::regs;
use crate::{DmaAlloc, DmaPage, Mmio, PAGE};

/// The bus: pages the device can reach by address (an IOMMU's view of the driver domain).
#[derive(Debug, Clone, Default)]
pub struct Bus {
    pages: Rc<RefCell<BTreeMap<u64, MemPage>>>,
    next: Rc<Cell<u64>>,
}

impl Bus {
    /// An empty bus; addresses start at 1 MiB.
    pub fn new() -> Self {
        let b = Self::default();
        b.next.set(1 << 20);
        b
    }

    /// Makes `page` reachable (as a grant mapping would); its address.
    pub fn map(&self, page: &MemPage) -> u64 {
        let a = self.next.get();
        self.next.set(a + PAGE as u64);
        self.pages.borrow_mut().insert(a, page.clone());
        a
    }

    /// Makes the page at `addr` unreachable (an unmap: a DMA there now faults).
    pub fn unmap(&self, addr: u64) {
        self.pages.borrow_mut().remove(&addr);
    }

    fn page(&self, addr: u64) -> Option<MemPage> {
        self.pages.borrow().get(&(addr & !(PAGE as u64 - 1))).cloned()
    }

    /// Pages mapped now.
    pub fn mapped(&self) -> usize {
        self.pages.borrow().len()
    }
}

/// A page of the bus, as the driver holds it.
#[derive(Debug, Clone)]
pub struct BusPage {
    /// The page.
    pub page: MemPage,
    /// Its bus address.
    pub addr: u64,
}

impl Page for BusPage {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        self.page.read(off, dst)
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError> {
        self.page.write(off, src)
    }
    fn load_u32(&self, off: usize) -> Result<u32, MemError> {
        self.page.load_u32(off)
    }
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError> {
        self.page.store_u32(off, v)
    }
    fn fence(&self) {}
}

impl DmaPage for BusPage {
    fn dma_addr(&self) -> u64 {
        self.addr
    }
}

impl DmaAlloc for Bus {
    type Page = BusPage;
    fn alloc(&mut self) -> Option<BusPage> {
        let page = MemPage::new();
        let addr = self.map(&page);
        Some(BusPage { page, addr })
    }
}

/// One namespace of the mock.
#[derive(Debug, Clone)]
pub struct MockNs {
    /// log2 of the block size.
    pub lbads: u8,
    /// The namespace's bytes.
    pub data: Vec<u8>,
}

impl MockNs {
    /// A zeroed namespace of `blocks` blocks of `1 << lbads` bytes.
    pub fn new(blocks: u64, lbads: u8) -> Self {
        Self { lbads, data: vec![0u8; (blocks << lbads) as usize] }
    }

    fn blocks(&self) -> u64 {
        (self.data.len() as u64) >> self.lbads
    }
}

/// A completion the mock writes wrongly, once (`corrupt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// A command id nobody submitted.
    Cid,
    /// Another submission queue's id.
    SqId,
    /// An SQ head past the tail.
    SqHead,
}

#[derive(Debug, Clone, Default)]
struct Sq {
    base: u64,
    size: u16,
    head: u16,
    tail: u16,
    cqid: u16,
}

#[derive(Debug, Clone, Default)]
struct Cq {
    base: u64,
    size: u16,
    /// Where the next completion goes.
    tail: u16,
    /// The host's head, from its doorbell.
    head: u16,
    phase: bool,
    /// (sq, cid) of completions posted and not yet consumed, oldest first.
    unconsumed: Vec<(u16, u16)>,
}

/// Injected faults.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Fetch no commands (a hung controller, until the next reset).
    pub stall: bool,
    /// Report `CSTS.CFS`.
    pub fatal: bool,
    /// Corrupt the next completion.
    pub corrupt: Option<Corruption>,
    /// Reads covering this LBA fail with Unrecovered Read Error.
    pub media_error_lba: Option<u64>,
    /// Refuse to become ready (`CSTS.RDY` never follows `CC.EN` = 1).
    pub never_ready: bool,
    /// A hostile device (the fuzzer's): each completion on an I/O queue is these bytes, 16
    /// at a time, instead of the real one, while they last.
    pub hostile: Option<alloc::collections::VecDeque<u8>>,
}

/// The mock controller: its registers are the driver's [`Mmio`].
#[derive(Debug)]
pub struct MockController {
    bus: Bus,
    /// CAP.MQES + 1.
    pub mqes: u16,
    /// CAP.DSTRD.
    pub dstrd: u32,
    /// Identify Controller MDTS.
    pub mdts: u8,
    /// A volatile write cache.
    pub vwc: bool,
    /// ONCS: DSM.
    pub dsm: bool,
    /// ONCS: Write Zeroes.
    pub write_zeroes: bool,
    /// The namespaces (nsid = index + 1).
    pub namespaces: Vec<MockNs>,
    cc: u32,
    csts: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    /// CSTS reads left before RDY follows EN.
    settle: u32,
    sqs: BTreeMap<u16, Sq>,
    cqs: BTreeMap<u16, Cq>,
    /// Breaches of the spec's rules by the driver.
    pub violations: Vec<String>,
    /// Faults to inject.
    pub faults: Faults,
    /// Commands executed, by opcode on I/O queues (flushes included).
    pub io_commands: u64,
    /// Flushes executed.
    pub flushes: u64,
    /// Bytes moved by DMA for reads and writes.
    pub dma_bytes: u64,
    /// Controller resets seen (EN 1 -> 0).
    pub resets: u64,
}

impl MockController {
    /// A controller with one namespace of `blocks` 512-byte blocks, 64-entry queues,
    /// MDTS 5 (128 KiB), a volatile write cache, DSM and Write Zeroes.
    pub fn new(bus: &Bus, blocks: u64) -> Self {
        Self {
            bus: bus.clone(),
            mqes: 64,
            dstrd: 0,
            mdts: 5,
            vwc: true,
            dsm: true,
            write_zeroes: true,
            namespaces: vec![MockNs::new(blocks, 9)],
            cc: 0,
            csts: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            settle: 0,
            sqs: BTreeMap::new(),
            cqs: BTreeMap::new(),
            violations: Vec::new(),
            faults: Faults::default(),
            io_commands: 0,
            flushes: 0,
            dma_bytes: 0,
            resets: 0,
        }
    }

    /// Lifts `stall` and fetches what the doorbells already announced.
    pub fn resume(&mut self) {
        self.faults.stall = false;
        let qs: Vec<u16> = self.sqs.keys().copied().collect();
        for q in qs {
            self.run(q);
        }
    }

    fn cap(&self) -> u64 {
        // MQES (0's based), CQR (contiguous queues required), TO 2 (1 s), DSTRD, CSS NVM,
        // MPSMIN 0, MPSMAX 0.
        u64::from(self.mqes - 1) | (1 << 16) | (2 << 24) | (u64::from(self.dstrd) << 32) | (1 << 37)
    }

    fn violation(&mut self, s: String) {
        self.violations.push(s);
    }

    fn enable(&mut self) {
        let cfg_ok = (self.cc >> 16) & 0xf == 6 && (self.cc >> 20) & 0xf == 4 && (self.cc >> 7) & 0xf == 0;
        let asqs = (self.aqa & 0xfff) as u16 + 1;
        let acqs = ((self.aqa >> 16) & 0xfff) as u16 + 1;
        let aligned = self.asq % PAGE as u64 == 0 && self.acq % PAGE as u64 == 0;
        if !cfg_ok || !aligned || asqs < 2 || acqs < 2 || asqs > self.mqes || acqs > self.mqes {
            self.violation(format!(
                "enabled with CC {:#x}, AQA {:#x}, ASQ {:#x}, ACQ {:#x}",
                self.cc, self.aqa, self.asq, self.acq
            ));
            self.csts |= regs::CSTS_CFS;
            return;
        }
        self.cqs.insert(0, Cq { base: self.acq, size: acqs, phase: true, ..Cq::default() });
        self.sqs.insert(0, Sq { base: self.asq, size: asqs, cqid: 0, ..Sq::default() });
        self.settle = 2;
    }

    fn disable(&mut self) {
        // A reset is what un-hangs a stalled controller (the fault models a hang a reset
        // cures, the case the driver's timeout exists for).
        self.faults.stall = false;
        self.sqs.clear();
        self.cqs.clear();
        self.csts &= !regs::CSTS_RDY;
        self.resets += 1;
    }

    fn doorbell(&mut self, off: usize, v: u32) {
        let stride = 4usize << self.dstrd;
        let idx = (off - regs::DOORBELLS) / stride;
        let qid = (idx / 2) as u16;
        if idx % 2 == 0 {
            let Some(sq) = self.sqs.get_mut(&qid) else {
                self.violation(format!("SQ {qid} doorbell for a queue that does not exist"));
                return;
            };
            if v >= u32::from(sq.size) {
                let size = sq.size;
                self.violation(format!("SQ {qid} tail {v} outside a queue of {size}"));
                return;
            }
            sq.tail = v as u16;
            self.run(qid);
        } else {
            let Some(cq) = self.cqs.get_mut(&qid) else {
                self.violation(format!("CQ {qid} doorbell for a queue that does not exist"));
                return;
            };
            let v16 = v as u16;
            let posted = (cq.tail + cq.size - cq.head) % cq.size;
            let consumed = (v16.wrapping_add(cq.size).wrapping_sub(cq.head)) % cq.size.max(1);
            if v >= u32::from(cq.size) || consumed > posted {
                let msg = format!("CQ {qid} head {v} past what was posted (head {}, tail {})", cq.head, cq.tail);
                self.violation(msg);
                return;
            }
            let n = usize::from(consumed);
            cq.unconsumed.drain(..n.min(cq.unconsumed.len()));
            cq.head = v16;
            // Commands that waited for room in this CQ.
            let waiting: Vec<u16> = self.sqs.iter().filter(|(_, s)| s.cqid == qid).map(|(q, _)| *q).collect();
            for q in waiting {
                self.run(q);
            }
        }
    }

    /// Fetches and executes the commands between the SQ's head and tail.
    fn run(&mut self, qid: u16) {
        if self.faults.stall || self.csts & regs::CSTS_RDY == 0 {
            return;
        }
        loop {
            let Some(sq) = self.sqs.get(&qid).cloned() else { return };
            if sq.head == sq.tail {
                return;
            }
            let Some(cq) = self.cqs.get(&sq.cqid) else { return };
            if (cq.tail + 1) % cq.size == cq.head {
                return; // the CQ is full: wait for the host
            }
            let mut raw = [0u8; 64];
            if !self.dma_read(sq.base + u64::from(sq.head) * 64, &mut raw) {
                self.violation(format!("SQ {qid} entry {} not on the bus", sq.head));
                return;
            }
            let head = (sq.head + 1) % sq.size;
            if let Some(s) = self.sqs.get_mut(&qid) {
                s.head = head;
            }
            let cmd = Command::decode(&raw);
            if Command::flags_of(&raw) != 0 {
                self.violation(format!("command {:#x} with FUSE/PSDT {:#x}", cmd.opcode, Command::flags_of(&raw)));
            }
            if self.cqs.get(&sq.cqid).is_some_and(|c| c.unconsumed.contains(&(qid, cmd.cid))) {
                self.violation(format!("SQ {qid}: cid {} reused before its completion was consumed", cmd.cid));
            }
            let (status, dw0) = if qid == 0 { self.admin(&cmd) } else { self.io(&cmd) };
            self.complete(qid, sq.cqid, head, cmd.cid, status, dw0);
        }
    }

    fn complete(&mut self, sqid: u16, cqid: u16, sq_head: u16, cid: u16, status: Status, dw0: u32) {
        let corrupt = self.faults.corrupt.take();
        let Some(cq) = self.cqs.get_mut(&cqid) else { return };
        let mut c = Completion { dw0, sq_head, sq_id: sqid, cid, phase: cq.phase, status };
        match corrupt {
            Some(Corruption::Cid) => c.cid = cid.wrapping_add(40),
            Some(Corruption::SqId) => c.sq_id = sqid.wrapping_add(5),
            Some(Corruption::SqHead) => c.sq_head = sq_head.wrapping_add(30) % 64,
            None => {}
        }
        let at = cq.base + u64::from(cq.tail) * 16;
        let mut bytes = c.encode();
        if let Some(h) = self.faults.hostile.as_mut().filter(|h| !h.is_empty() && sqid != 0) {
            for b in bytes.iter_mut() {
                *b = h.pop_front().unwrap_or(0);
            }
        }
        cq.unconsumed.push((sqid, cid));
        cq.tail += 1;
        if cq.tail == cq.size {
            cq.tail = 0;
            cq.phase = !cq.phase;
        }
        if !self.dma_write(at, &bytes) {
            self.violation(format!("CQ {cqid} entry not on the bus"));
        }
    }

    fn admin(&mut self, c: &Command) -> (Status, u32) {
        let invalid_field = (Status { sct: 0, sc: 0x02, dnr: true }, 0);
        match c.opcode {
            admin::IDENTIFY => {
                if c.prp1 % 4 != 0 {
                    self.violation(format!("identify PRP1 {:#x} not dword-aligned", c.prp1));
                    return invalid_field;
                }
                let mut page = [0u8; PAGE];
                match c.cdw[0] & 0xff {
                    1 => {
                        page[77] = self.mdts;
                        page[516..520].copy_from_slice(&(self.namespaces.len() as u32).to_le_bytes());
                        let oncs = (u16::from(self.dsm) << 2) | (u16::from(self.write_zeroes) << 3);
                        page[520..522].copy_from_slice(&oncs.to_le_bytes());
                        page[525] = u8::from(self.vwc);
                        page[512] = 0x66;
                        page[513] = 0x44;
                    }
                    0 => {
                        let Some(ns) = self.ns(c.nsid) else {
                            return (Status { sct: 0, sc: 0x0b, dnr: true }, 0);
                        };
                        page[0..8].copy_from_slice(&ns.blocks().to_le_bytes());
                        page[8..16].copy_from_slice(&ns.blocks().to_le_bytes());
                        page[26] = 0;
                        page[128 + 2] = ns.lbads;
                    }
                    _ => return invalid_field,
                }
                if !self.dma_write(c.prp1, &page) {
                    self.violation(format!("identify buffer {:#x} not on the bus", c.prp1));
                    return (Status { sct: 0, sc: 0x04, dnr: false }, 0);
                }
                (Status::SUCCESS, 0)
            }
            admin::SET_FEATURES if c.cdw[0] & 0xff == 7 => (Status::SUCCESS, c.cdw[1]),
            admin::CREATE_CQ => {
                let qid = (c.cdw[0] & 0xffff) as u16;
                let size = (c.cdw[0] >> 16) as u16 + 1;
                if c.cdw[1] & 1 == 0 {
                    self.violation(String::from("CQ not physically contiguous (CAP.CQR is set)"));
                    return invalid_field;
                }
                if qid == 0 || self.cqs.contains_key(&qid) {
                    return (Status { sct: 1, sc: 0x01, dnr: true }, 0);
                }
                if size < 2 || size > self.mqes {
                    return (Status { sct: 1, sc: 0x02, dnr: true }, 0);
                }
                if c.prp1 % PAGE as u64 != 0 || self.bus.page(c.prp1).is_none() {
                    self.violation(format!("CQ base {:#x} not a mapped page", c.prp1));
                    return invalid_field;
                }
                self.cqs.insert(qid, Cq { base: c.prp1, size, phase: true, ..Cq::default() });
                (Status::SUCCESS, 0)
            }
            admin::CREATE_SQ => {
                let qid = (c.cdw[0] & 0xffff) as u16;
                let size = (c.cdw[0] >> 16) as u16 + 1;
                let cqid = (c.cdw[1] >> 16) as u16;
                if qid == 0 || self.sqs.contains_key(&qid) {
                    return (Status { sct: 1, sc: 0x01, dnr: true }, 0);
                }
                if !self.cqs.contains_key(&cqid) || cqid == 0 {
                    // "Completion Queue Invalid".
                    return (Status { sct: 1, sc: 0x00, dnr: true }, 0);
                }
                if size < 2 || size > self.mqes {
                    return (Status { sct: 1, sc: 0x02, dnr: true }, 0);
                }
                if c.prp1 % PAGE as u64 != 0 || self.bus.page(c.prp1).is_none() {
                    self.violation(format!("SQ base {:#x} not a mapped page", c.prp1));
                    return invalid_field;
                }
                self.sqs.insert(qid, Sq { base: c.prp1, size, cqid, ..Sq::default() });
                (Status::SUCCESS, 0)
            }
            _ => (Status { sct: 0, sc: 0x01, dnr: true }, 0),
        }
    }

    fn ns(&self, nsid: u32) -> Option<&MockNs> {
        nsid.checked_sub(1).and_then(|i| self.namespaces.get(i as usize))
    }

    fn io(&mut self, c: &Command) -> (Status, u32) {
        self.io_commands += 1;
        let Some(ns) = self.ns(c.nsid).cloned() else {
            return (Status { sct: 0, sc: 0x0b, dnr: true }, 0);
        };
        let slba = u64::from(c.cdw[0]) | (u64::from(c.cdw[1]) << 32);
        let nlb = u64::from(c.cdw[2] & 0xffff) + 1;
        let in_range = slba.checked_add(nlb).is_some_and(|e| e <= ns.blocks());
        let out_of_range = (Status { sct: 0, sc: 0x80, dnr: true }, 0);
        match c.opcode {
            nvm::FLUSH => {
                self.flushes += 1;
                (Status::SUCCESS, 0)
            }
            nvm::READ | nvm::WRITE => {
                if !in_range {
                    return out_of_range;
                }
                let bytes = (nlb << ns.lbads) as usize;
                if self.mdts != 0 && bytes > (PAGE << self.mdts) {
                    self.violation(format!("a transfer of {bytes} bytes past MDTS"));
                    return (Status { sct: 0, sc: 0x02, dnr: true }, 0);
                }
                let Some(pages) = self.prps(c, bytes) else {
                    return (Status { sct: 0, sc: 0x04, dnr: false }, 0);
                };
                if c.opcode == nvm::READ {
                    if let Some(bad) = self.faults.media_error_lba {
                        if (slba..slba + nlb).contains(&bad) {
                            return (Status { sct: 2, sc: 0x81, dnr: true }, 0);
                        }
                    }
                }
                let mut at = (slba << ns.lbads) as usize;
                let nsi = (c.nsid - 1) as usize;
                for (addr, len) in pages {
                    let Some(p) = self.bus.page(addr) else { return (Status { sct: 0, sc: 0x04, dnr: false }, 0) };
                    let off = (addr % PAGE as u64) as usize;
                    let disk = &mut self.namespaces[nsi].data[at..at + len];
                    let ok = if c.opcode == nvm::READ { p.write(off, disk).is_ok() } else { p.read(off, disk).is_ok() };
                    if !ok {
                        return (Status { sct: 0, sc: 0x04, dnr: false }, 0);
                    }
                    at += len;
                }
                self.dma_bytes += bytes as u64;
                (Status::SUCCESS, 0)
            }
            nvm::WRITE_ZEROES => {
                if !self.write_zeroes {
                    return (Status { sct: 0, sc: 0x01, dnr: true }, 0);
                }
                if !in_range {
                    return out_of_range;
                }
                let nsi = (c.nsid - 1) as usize;
                let a = (slba << ns.lbads) as usize;
                self.namespaces[nsi].data[a..a + (nlb << ns.lbads) as usize].fill(0);
                (Status::SUCCESS, 0)
            }
            nvm::DSM => {
                if !self.dsm {
                    return (Status { sct: 0, sc: 0x01, dnr: true }, 0);
                }
                let nr = (c.cdw[0] & 0xff) as usize + 1;
                let mut ranges = vec![0u8; nr * 16];
                if c.prp1 % 4 != 0 || !self.dma_read(c.prp1, &mut ranges) {
                    self.violation(format!("DSM ranges at {:#x} not readable", c.prp1));
                    return (Status { sct: 0, sc: 0x04, dnr: false }, 0);
                }
                if c.cdw[1] & (1 << 2) != 0 {
                    for r in ranges.chunks(16) {
                        let len = u64::from(u32::from_le_bytes(r[4..8].try_into().unwrap()));
                        let lba = u64::from_le_bytes(r[8..16].try_into().unwrap());
                        if lba.checked_add(len).is_none_or(|e| e > ns.blocks()) {
                            return out_of_range;
                        }
                        let nsi = (c.nsid - 1) as usize;
                        let a = (lba << ns.lbads) as usize;
                        // Deallocated blocks read as zeroes here (DLFEAT 001b).
                        self.namespaces[nsi].data[a..a + (len << ns.lbads) as usize].fill(0);
                    }
                }
                (Status::SUCCESS, 0)
            }
            _ => (Status { sct: 0, sc: 0x01, dnr: true }, 0),
        }
    }

    /// The pages of a transfer of `bytes` by its PRPs: (address of the bytes, length).
    fn prps(&mut self, c: &Command, bytes: usize) -> Option<Vec<(u64, usize)>> {
        if c.prp1 % 4 != 0 {
            self.violation(format!("PRP1 {:#x} not dword-aligned", c.prp1));
            return None;
        }
        let first_off = (c.prp1 % PAGE as u64) as usize;
        let first = (PAGE - first_off).min(bytes);
        let mut out = vec![(c.prp1, first)];
        let mut left = bytes - first;
        let pages_left = left.div_ceil(PAGE);
        let mut addrs = Vec::new();
        if pages_left == 1 {
            addrs.push(c.prp2);
        } else if pages_left > 1 {
            if c.prp2 % PAGE as u64 != 0 {
                self.violation(format!("PRP list pointer {:#x} not page-aligned", c.prp2));
                return None;
            }
            let mut list = vec![0u8; pages_left * 8];
            if pages_left > PAGE / 8 || !self.dma_read(c.prp2, &mut list) {
                self.violation(format!("PRP list at {:#x} not readable or chained", c.prp2));
                return None;
            }
            addrs.extend(list.chunks(8).map(|e| u64::from_le_bytes(e.try_into().unwrap())));
        }
        for a in addrs {
            if a % PAGE as u64 != 0 {
                self.violation(format!("PRP entry {a:#x} not page-aligned"));
                return None;
            }
            let n = left.min(PAGE);
            out.push((a, n));
            left -= n;
        }
        for &(a, _) in &out {
            if self.bus.page(a).is_none() {
                // What an IOMMU reports as a DMA fault: a page not mapped for the device.
                self.violation(format!("DMA to {a:#x}, not mapped for the device"));
                return None;
            }
        }
        Some(out)
    }

    fn dma_read(&self, addr: u64, dst: &mut [u8]) -> bool {
        let off = (addr % PAGE as u64) as usize;
        match self.bus.page(addr) {
            Some(p) if off + dst.len() <= PAGE => p.read(off, dst).is_ok(),
            _ => false,
        }
    }

    fn dma_write(&self, addr: u64, src: &[u8]) -> bool {
        let off = (addr % PAGE as u64) as usize;
        match self.bus.page(addr) {
            Some(p) if off + src.len() <= PAGE => p.write(off, src).is_ok(),
            _ => false,
        }
    }
}

impl Mmio for MockController {
    fn read32(&mut self, off: usize) -> u32 {
        match off {
            regs::CAP => (self.cap() & 0xffff_ffff) as u32,
            o if o == regs::CAP + 4 => (self.cap() >> 32) as u32,
            regs::VS => 0x0001_0400,
            regs::CC => self.cc,
            regs::CSTS => {
                if self.settle > 0 {
                    self.settle -= 1;
                    if self.settle == 0 && self.cc & regs::CC_EN != 0 && !self.faults.never_ready {
                        self.csts |= regs::CSTS_RDY;
                    }
                }
                self.csts | if self.faults.fatal { regs::CSTS_CFS } else { 0 }
            }
            regs::AQA => self.aqa,
            _ => 0,
        }
    }

    fn write32(&mut self, off: usize, v: u32) {
        let enabled = self.cc & regs::CC_EN != 0;
        match off {
            regs::CC => {
                let was = enabled;
                self.cc = v;
                match (was, v & regs::CC_EN != 0) {
                    (false, true) => self.enable(),
                    (true, false) => self.disable(),
                    _ => {}
                }
            }
            regs::AQA | regs::ASQ | 0x2c | regs::ACQ | 0x34 if enabled => {
                self.violation(format!("admin queue register {off:#x} written while enabled"));
            }
            regs::AQA => self.aqa = v,
            regs::ASQ => self.asq = (self.asq & !0xffff_ffff) | u64::from(v),
            0x2c => self.asq = (self.asq & 0xffff_ffff) | (u64::from(v) << 32),
            regs::ACQ => self.acq = (self.acq & !0xffff_ffff) | u64::from(v),
            0x34 => self.acq = (self.acq & 0xffff_ffff) | (u64::from(v) << 32),
            o if o >= regs::DOORBELLS => self.doorbell(o, v),
            regs::INTMS | regs::INTMC => {}
            o => self.violation(format!("write of {v:#x} to register {o:#x}")),
        }
    }
}

/// The driver under test and its mock, sharing one bus.
pub type TestController = crate::Controller<Rc<RefCell<MockController>>, BusPage>;

impl Mmio for Rc<RefCell<MockController>> {
    fn read32(&mut self, off: usize) -> u32 {
        self.borrow_mut().read32(off)
    }
    fn write32(&mut self, off: usize, v: u32) {
        self.borrow_mut().write32(off, v);
    }
}
