use super::prelude::*;
use super::*;

/// Store memory the fake grant table can reach by GFN (copy-path tests).
#[derive(Debug)]
pub struct FrameBacking {
    pages: Vec<MemPage>,
    base_gfn: u64,
    /// Scratch frames for the swap path (`with_scratch`).
    pub scratch: Option<ScratchPool>,
}

impl FrameBacking {
    /// `bytes` of zeroed store memory registered in `g` at GFNs from `base_gfn`.
    pub fn new(g: &mut FakeGrants, bytes: usize, base_gfn: u64) -> Self {
        let pages: Vec<MemPage> = (0..bytes.div_ceil(PAGE)).map(|_| MemPage::new()).collect();
        for (i, p) in pages.iter().enumerate() {
            g.locals.borrow_mut().insert(base_gfn + i as u64, p.clone());
        }
        Self { pages, base_gfn, scratch: None }
    }

    /// Adds `n` scratch frames and a zero frame, registered in `g` at GFNs from `base_gfn`.
    pub fn with_scratch(mut self, g: &mut FakeGrants, n: usize, base_gfn: u64) -> Self {
        let mut locals = g.locals.borrow_mut();
        locals.insert(base_gfn, MemPage::new());
        let pages = (1..=n as u64)
            .map(|i| {
                locals.insert(base_gfn + i, MemPage::new());
                (base_gfn + i, None)
            })
            .collect();
        self.scratch = Some(ScratchPool { zero: base_gfn, pages });
        self
    }
    pub fn bytes(&self, off: usize, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut o = off;
        while out.len() < len {
            let n = (PAGE - o % PAGE).min(len - out.len());
            out.extend(self.pages.get(o / PAGE).map(|p| p.get(o % PAGE, n)).unwrap_or_else(|| vec![0; n]));
            o += n;
        }
        out
    }
}

impl RamBacking for FrameBacking {
    fn size(&self) -> u64 {
        (self.pages.len() * PAGE) as u64
    }
    fn to_page(&self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError> {
        let data = self.bytes(off as usize, len);
        page.write(page_off, &data)
    }
    fn store_page(&mut self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError> {
        let mut buf = vec![0u8; len];
        page.read(page_off, &mut buf)?;
        let mut o = off as usize;
        let mut done = 0;
        while done < len {
            let n = (PAGE - o % PAGE).min(len - done);
            self.pages.get(o / PAGE).ok_or(MemError::OutOfBounds)?.set(o % PAGE, &buf[done..done + n]);
            o += n;
            done += n;
        }
        Ok(())
    }
    fn zero(&mut self, off: u64, len: u64) {
        let mut o = off as usize;
        let end = (off + len) as usize;
        while o < end {
            let n = (PAGE - o % PAGE).min(end - o);
            if let Some(p) = self.pages.get(o / PAGE) {
                p.set(o % PAGE, &vec![0; n]);
            }
            o += n;
        }
    }
    fn gfn(&self, off: u64) -> Option<(u64, u16)> {
        let i = off / PAGE as u64;
        ((i as usize) < self.pages.len()).then(|| (self.base_gfn + i, (off % PAGE as u64) as u16))
    }
    fn scratch(&mut self) -> Option<&mut ScratchPool> {
        self.scratch.as_mut()
    }
}
