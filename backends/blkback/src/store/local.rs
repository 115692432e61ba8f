//! Disks on the driver domain's own devices (`target=nvme:<n>[/<nsid>]`): the controllers
//! the runtime found on its PCI bus, brought up once at boot and shared by the stores of
//! their namespaces.
//!
//! The service sees them through [`LocalDisks`] (one object, like the network's
//! `Connector`), so it stays generic over the hypervisor only; [`NvmeDisks`] is the
//! implementation over any `Mmio` and DMA-page source, host-tested against the `nvme`
//! crate's mock controller. [`DmaFrames`] turns the runtime's shared frames into the
//! driver's DMA pages: their bus address is their GFN, which is what the IOMMU's tables for
//! the driver domain translate (Xen mirrors our p2m into them, grant mappings included).
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::ToString;
use alloc::vec::Vec;
use core::cell::RefCell;

use nvme::{DmaAlloc, DmaPage, Mmio, State};

use super::nvme::{BusAddr, NvmeDevice, NvmeStore};
use super::{BlockStore, Completion, DiskInfo, StoreError, StoreIo};
use crate::error::OpenError;
use crate::hv::{MemError, Page, SharedFrame, SharedFrames};

/// Opens stores on the driver domain's own controllers.
pub trait LocalDisks<B: Page>: core::fmt::Debug {
    /// A store on namespace `nsid` of controller `ctl`, or why there is none.
    fn open(&mut self, ctl: u8, nsid: u32, read_only: bool) -> Result<LocalStore<B>, OpenError>;
}

/// No local controllers (a PVH driver domain, host tests): every `nvme:` target is refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLocalDisks;

impl<B: Page> LocalDisks<B> for NoLocalDisks {
    fn open(&mut self, ctl: u8, _: u32, _: bool) -> Result<LocalStore<B>, OpenError> {
        Err(OpenError::NoController { ctl, found: 0 })
    }
}

/// A store on a local device, behind one pointer (its controller's types stay out of the
/// service's).
pub struct LocalStore<B>(Box<dyn BlockStore<B>>);

impl<B> core::fmt::Debug for LocalStore<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("LocalStore")
    }
}

impl<B: Page> LocalStore<B> {
    /// Wraps a store.
    pub fn new(s: impl BlockStore<B> + 'static) -> Self {
        Self(Box::new(s))
    }
}

impl<B: Page> BlockStore<B> for LocalStore<B> {
    fn info(&self) -> DiskInfo {
        self.0.info()
    }
    fn submit(&mut self, io: StoreIo<B>) -> Result<(), (StoreIo<B>, StoreError)> {
        self.0.submit(io)
    }
    fn complete(&mut self, out: &mut Vec<Completion<B>>) {
        self.0.complete(out);
    }
    fn poll(&mut self) {
        self.0.poll();
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.0.counters()
    }
    fn failed(&self) -> Option<&str> {
        self.0.failed()
    }
    fn ready(&self) -> bool {
        self.0.ready()
    }
    fn has_work(&self) -> bool {
        self.0.has_work()
    }
    fn cancel(&mut self, out: &mut Vec<StoreIo<B>>) {
        self.0.cancel(out);
    }
}

/// A segment buffer's bus address, shared by the stores of every namespace.
type SharedBusAddr<B> = Rc<dyn Fn(&B) -> Option<u64>>;

/// The driver domain's NVMe controllers, in the order its PCI scan found them.
pub struct NvmeDisks<M, A: DmaAlloc, B> {
    ctls: Vec<Rc<RefCell<NvmeDevice<M, A>>>>,
    /// A segment buffer's bus address (where its grant is mapped).
    dma: SharedBusAddr<B>,
}

impl<M, A: DmaAlloc, B> core::fmt::Debug for NvmeDisks<M, A, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NvmeDisks({} controllers)", self.ctls.len())
    }
}

impl<M: Mmio + 'static, A: DmaAlloc + 'static, B: Page + 'static> NvmeDisks<M, A, B> {
    /// Controllers `ctls` (numbered by position); `dma` gives a mapped segment's bus address.
    pub fn new(ctls: Vec<Rc<RefCell<NvmeDevice<M, A>>>>, dma: impl Fn(&B) -> Option<u64> + 'static) -> Self {
        Self { ctls, dma: Rc::new(dma) }
    }

    /// The controllers.
    pub fn controllers(&self) -> &[Rc<RefCell<NvmeDevice<M, A>>>] {
        &self.ctls
    }
}

impl<M: Mmio + 'static, A: DmaAlloc + 'static, B: Page + 'static> LocalDisks<B> for NvmeDisks<M, A, B> {
    fn open(&mut self, ctl: u8, nsid: u32, read_only: bool) -> Result<LocalStore<B>, OpenError> {
        let found = self.ctls.len();
        let dev = self.ctls.get(usize::from(ctl)).ok_or(OpenError::NoController { ctl, found })?;
        {
            let mut d = dev.borrow_mut();
            d.poll();
            match d.controller().state() {
                State::Failed(e) => return Err(OpenError::ControllerFailed { ctl, why: e.to_string() }),
                // Still coming up (identify pending): the store is not ready until it is,
                // and the device waits in InitWait like an NBD disk's.
                State::Ready => {
                    let ns = d.controller().namespaces().iter().find(|n| n.nsid == nsid).copied();
                    if ns.is_none_or(|n| n.blocks == 0) {
                        return Err(OpenError::NoNamespace { ctl, nsid });
                    }
                }
                _ => {}
            }
        }
        let dma = self.dma.clone();
        let bus: BusAddr<B> = Box::new(move |b: &B| dma(b));
        Ok(LocalStore::new(NvmeStore::new(dev.clone(), nsid, read_only, bus)))
    }
}

/// One of the runtime's shared frames as a DMA page: its bus address is its GFN.
#[derive(Debug)]
pub struct DmaFrame<P>(pub P);

impl<P: Page> Page for DmaFrame<P> {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        self.0.read(off, dst)
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError> {
        self.0.write(off, src)
    }
    fn load_u32(&self, off: usize) -> Result<u32, MemError> {
        self.0.load_u32(off)
    }
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError> {
        self.0.store_u32(off, v)
    }
    fn fence(&self) {
        self.0.fence();
    }
}

impl<P: SharedFrame> DmaPage for DmaFrame<P> {
    fn dma_addr(&self) -> u64 {
        self.0.gfn() << 12
    }
}

/// The runtime's frames as the driver's DMA-page source (queues, identify data, PRP lists).
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaFrames<F>(pub F);

impl<F: SharedFrames> DmaAlloc for DmaFrames<F> {
    type Page = DmaFrame<F::Shared>;
    fn alloc(&mut self) -> Option<Self::Page> {
        self.0.alloc_shared().map(DmaFrame)
    }
}
