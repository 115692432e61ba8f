//! The binary's local-disk wiring: the NVMe controllers on the driver domain's PCI bus (an
//! HVM driver domain given one with `pci=[...]`), brought up at boot and handed to the
//! service for `nvme:` targets. The driver is the `nvme` crate, the store blkback's; the
//! runtime places and maps the BAR (`kernel::pci`).
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use blkback::store::local::{DmaFrames, NvmeDisks};
use blkback::store::nvme::NvmeDevice;
use kernel::gnttab::ForeignMap;
use kernel::mem::FrameAllocator;
use kernel::{pci, time};

/// How long bring-up (reset, enable, identify, queues) may take before the boot goes on
/// without the controller (it then stays failed, and its disks are refused with why).
const BRING_UP_NS: u64 = 30_000_000_000;

/// BAR0 as the driver's registers.
pub struct Bar0(pci::Bar);

impl nvme::Mmio for Bar0 {
    fn read32(&mut self, off: usize) -> u32 {
        self.0.read32(off)
    }
    fn write32(&mut self, off: usize, v: u32) {
        self.0.write32(off, v);
    }
}

type Dev = NvmeDevice<Bar0, DmaFrames<FrameAllocator>>;

/// The controllers as the service's `LocalDisks`.
pub type Disks = NvmeDisks<Bar0, DmaFrames<FrameAllocator>, Rc<ForeignMap>>;

/// Finds, enables and brings up every NVMe controller on the bus; `None` if there is none
/// (a PVH driver domain: nothing answers its config reads).
pub fn bring_up() -> Option<Disks> {
    let mut ctls: Vec<Rc<RefCell<Dev>>> = Vec::new();
    for f in pci::scan() {
        if f.class != pci::CLASS_NVME {
            continue;
        }
        let (bdf, id) = (f.bdf, (f.vendor, f.device));
        let bar = match pci::enable(f) {
            Ok(b) => b,
            Err(e) => {
                kernel::error!("nvme{}: {bdf} {:04x}:{:04x}: {e}", ctls.len(), id.0, id.1);
                continue;
            }
        };
        kernel::info!(
            "nvme{}: {bdf} {:04x}:{:04x}, BAR0 {:#x} ({} KiB, uncached), bus mastering on",
            ctls.len(),
            id.0,
            id.1,
            bar.base(),
            bar.len() >> 10
        );
        let t0 = time::system_time_ns();
        let dev = NvmeDevice::new(Bar0(bar), DmaFrames(FrameAllocator), time::system_time_ns);
        loop {
            dev.borrow_mut().poll();
            let state = dev.borrow().controller().state();
            let waited = time::system_time_ns().saturating_sub(t0);
            match state {
                nvme::State::Ready => {
                    let d = dev.borrow();
                    let c = d.controller();
                    let mdts = c.max_pages().saturating_mul(4);
                    let (dsm, wz) = c.can_discard();
                    kernel::info!(
                        "nvme{}: ready in {} ms: MDTS {mdts} KiB, volatile cache {}, discard {}",
                        ctls.len(),
                        waited / 1_000_000,
                        if c.has_cache() { "yes" } else { "no" },
                        if dsm {
                            "deallocate"
                        } else if wz {
                            "write zeroes"
                        } else {
                            "none"
                        }
                    );
                    for n in c.namespaces() {
                        kernel::info!(
                            "nvme{}: namespace {}: {} blocks of {} bytes ({} MiB)",
                            ctls.len(),
                            n.nsid,
                            n.blocks,
                            n.block_size,
                            n.blocks.saturating_mul(u64::from(n.block_size)) >> 20
                        );
                    }
                    break;
                }
                nvme::State::Failed(e) => {
                    kernel::error!("nvme{}: bring-up failed: {e}", ctls.len());
                    break;
                }
                _ if waited > BRING_UP_NS => {
                    kernel::error!("nvme{}: not ready after {} s ({state:?})", ctls.len(), waited / 1_000_000_000);
                    break;
                }
                _ => core::hint::spin_loop(),
            }
        }
        ctls.push(dev);
    }
    if ctls.is_empty() {
        return None;
    }
    Some(NvmeDisks::new(ctls, |m: &Rc<ForeignMap>| Some(m.bus_addr())))
}

/// How long the IOMMU probe waits for the device's answer.
const PROBE_NS: u64 = 5_000_000_000;

/// `iommu-probe`: each ready controller reads one block of namespace 1 into a bus address
/// nothing maps for it (the first page past the grant region, above every memory-map
/// entry: no RAM, no grant, no MMIO of ours). The IOMMU must stop that DMA, and Xen logs
/// the fault (`xl dmesg`: "DMAR:[DMA Write] Request device [...] fault addr ..."), which the
/// `nvme-dd` scenario checks; the console says how the command ended. The controller stays
/// usable either way (a status is not a reset).
pub fn probe_iommu(disks: &Disks) {
    let addr = (kernel::mem::grant_region_base() + kernel::mem::GRANT_REGION_PAGES) << 12;
    for (i, dev) in disks.controllers().iter().enumerate() {
        let Some(ns) = dev.borrow().controller().namespaces().first().copied() else { continue };
        let Ok(len) = u16::try_from(ns.block_size) else { continue };
        let piece = nvme::prp::Piece { addr, off: 0, len };
        let io = nvme::Io { tag: 0, nsid: ns.nsid, op: nvme::IoOp::Read, lba: 0, blocks: 1, data: alloc::vec![piece] };
        let tag = match dev.borrow_mut().submit(io) {
            Ok(t) => t,
            Err((_, e)) => {
                kernel::error!("nvme{i}: IOMMU probe not sent: {e}");
                continue;
            }
        };
        let t0 = time::system_time_ns();
        let result = loop {
            dev.borrow_mut().poll();
            if let Some(r) = dev.borrow_mut().take_result(tag) {
                break Some(r);
            }
            if time::system_time_ns().saturating_sub(t0) > PROBE_NS {
                break None;
            }
            core::hint::spin_loop();
        };
        // What the device says is only half the proof: a real controller is told of the
        // IOMMU's refusal (a completer abort: Data Transfer Error), an emulated one may not be
        // (QEMU's DMA helpers drop a write to an untranslated address and complete the
        // command). The other half is Xen's fault log, which names the device and address.
        match result {
            Some(Err(e)) => kernel::info!(
                "nvme{i}: IOMMU probe: a read DMA'd to {addr:#x}, which nothing maps for the device, ended with an error: {e}; Xen's log shows the fault"
            ),
            Some(Ok(())) => kernel::warn!(
                "nvme{i}: IOMMU probe: a read DMA'd to {addr:#x}, which nothing maps for the device, completed without error: only Xen's IOMMU fault log (`xl dmesg`: DMAR ... fault addr) shows whether it was stopped"
            ),
            None => kernel::error!("nvme{i}: IOMMU probe: no answer in {} s", PROBE_NS / 1_000_000_000),
        }
    }
}
