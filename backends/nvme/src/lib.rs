//! A polled NVMe driver (NVMe Base Specification 1.4, "NVM Express over PCIe"), sans-I/O:
//! the caller owns the loop and the clock, the controller's registers are behind [`Mmio`]
//! and the memory it DMAs to behind [`DmaPage`] (the runtime maps BAR0 and hands out
//! pages whose bus address is their GFN; a grant-mapped frontend page is such a page, so
//! data moves by DMA straight into it).
//!
//! The device is untrusted input like a frontend: every completion is validated before it
//! is acted on (its queue, its command id against what is outstanding, its SQ head against
//! what was submitted, the phase bit), a controller that stops answering is timed out, and
//! a fatal status (`CSTS.CFS`) fails what it holds instead of hanging.
//!
//! Module map: [`regs`] (BAR0 layout and fields) → [`cmd`] (submission and completion
//! entries, identify data) → [`prp`] (data pointers) → [`queue`] (one SQ/CQ pair) →
//! [`controller`] (bring-up and I/O); `testing` (feature `test-utils`): the mock controller.
#![no_std]
#![forbid(unsafe_code)]
#![warn(clippy::arithmetic_side_effects)]

extern crate alloc;

pub mod cmd;
pub mod controller;
pub mod prp;
pub mod queue;
pub mod regs;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use controller::{Controller, Error, Io, IoOp, Namespace, State};

/// The controller's registers (BAR0), as the runtime maps them: 32- and 64-bit accesses at
/// byte offsets (`regs`). Reads have no side effects the driver relies on.
pub trait Mmio {
    /// A 32-bit register.
    fn read32(&mut self, off: usize) -> u32;
    /// Writes a 32-bit register (a doorbell write is what makes the device act).
    fn write32(&mut self, off: usize, v: u32);
    /// A 64-bit register (CAP, ASQ, ACQ), as two 32-bit reads low then high.
    fn read64(&mut self, off: usize) -> u64 {
        let lo = u64::from(self.read32(off));
        let hi = u64::from(self.read32(off.saturating_add(4)));
        lo | (hi << 32)
    }
    /// Writes a 64-bit register, low then high.
    fn write64(&mut self, off: usize, v: u64) {
        self.write32(off, (v & 0xffff_ffff) as u32);
        self.write32(off.saturating_add(4), (v >> 32) as u32);
    }
}

/// A 4 KiB page the device can DMA to and from: queue memory, identify buffers and PRP
/// lists of ours, or a frontend's grant-mapped page. Its bus address is what goes into
/// the device's pointers (a GFN, page-aligned).
pub trait DmaPage: xen_hv::Page {
    /// The page's bus address (page-aligned).
    fn dma_addr(&self) -> u64;
}

/// Where the driver's own DMA pages come from (queues, identify data, PRP lists).
pub trait DmaAlloc {
    /// The page type.
    type Page: DmaPage;
    /// A zeroed page, or `None` when there is none.
    fn alloc(&mut self) -> Option<Self::Page>;
}

/// The NVMe memory page size the driver uses (`CC.MPS` = 0).
pub const PAGE: usize = 4096;
