//! A boot module served in place (`target=module[:n]`).
use super::ram::RamBacking;
use crate::hv::{MemError, Page, Region};

/// A disk served in place from one contiguous region (a boot module: `ramdisk=` in the
/// driver domain's xl config). Its contents outlive the device.
#[derive(Debug)]
pub struct RegionDisk<R> {
    region: R,
}

impl<R: Region> RegionDisk<R> {
    pub fn new(region: R) -> Self {
        Self { region }
    }
    pub fn into_region(self) -> R {
        self.region
    }
}

impl<R: Region> RamBacking for RegionDisk<R> {
    fn size(&self) -> u64 {
        // Whole sectors only.
        u64::try_from(self.region.bytes().len()).unwrap_or(0) & !511
    }
    fn to_page(&self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError> {
        let s = usize::try_from(off).map_err(|_| MemError::OutOfBounds)?;
        let src = self.region.bytes().get(s..).and_then(|b| b.get(..len)).ok_or(MemError::OutOfBounds)?;
        page.write(page_off, src)
    }
    fn store_page(&mut self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError> {
        let s = usize::try_from(off).map_err(|_| MemError::OutOfBounds)?;
        let dst = self.region.bytes_mut().get_mut(s..).and_then(|b| b.get_mut(..len)).ok_or(MemError::OutOfBounds)?;
        page.read(page_off, dst)
    }
    fn zero(&mut self, off: u64, len: u64) {
        let (Ok(s), Ok(n)) = (usize::try_from(off), usize::try_from(len)) else {
            return;
        };
        if let Some(d) = self.region.bytes_mut().get_mut(s..).and_then(|b| b.get_mut(..n)) {
            d.fill(0);
        }
    }
    fn gfn(&self, off: u64) -> Option<(u64, u16)> {
        (off < self.size()).then(|| self.region.gfn(off)).flatten()
    }
}
