use super::prelude::*;
use super::*;

/// Store memory the fake grant table can reach by GFN (copy-path tests).
#[derive(Debug)]
pub struct FrameBacking {
    pages: Vec<MemPage>,
    base_gfn: u64,
}

impl FrameBacking {
    /// `bytes` of zeroed store memory registered in `g` at GFNs from `base_gfn`.
    pub fn new(g: &mut FakeGrants, bytes: usize, base_gfn: u64) -> Self {
        let pages: Vec<MemPage> = (0..bytes.div_ceil(PAGE)).map(|_| MemPage::new()).collect();
        for (i, p) in pages.iter().enumerate() {
            g.locals.insert(base_gfn + i as u64, p.clone());
        }
        Self { pages, base_gfn }
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
}

/// One of the driver domain's own frames, as the fake runtime hands it out. Counts itself
/// in its allocator while alive (a RAM disk's frames go back on detach).
#[derive(Debug)]
pub struct FakeFrame {
    gfn: u64,
    data: Box<[u8; PAGE]>,
    live: Rc<Cell<usize>>,
}

impl Frame for FakeFrame {
    fn gfn(&self) -> u64 {
        self.gfn
    }
    fn bytes(&self) -> &[u8] {
        &self.data[..]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[..]
    }
}

impl Drop for FakeFrame {
    fn drop(&mut self) {
        self.live.set(self.live.get() - 1);
    }
}

/// The fake runtime's frame allocator: `capacity` frames at most.
#[derive(Debug, Clone)]
pub struct FakeFrames {
    capacity: usize,
    next_gfn: u64,
    live: Rc<Cell<usize>>,
}

impl FakeFrames {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, next_gfn: 0x10_0000, live: Rc::new(Cell::new(0)) }
    }
    /// Frames handed out and not yet returned.
    pub fn live(&self) -> usize {
        self.live.get()
    }
}

impl Frames for FakeFrames {
    type Frame = FakeFrame;
    fn alloc(&mut self) -> Option<FakeFrame> {
        if self.live.get() >= self.capacity {
            return None;
        }
        self.live.set(self.live.get() + 1);
        self.next_gfn += 1;
        Some(FakeFrame { gfn: self.next_gfn, data: Box::new([0; PAGE]), live: self.live.clone() })
    }
    fn free_bytes(&self) -> u64 {
        ((self.capacity - self.live.get()) * PAGE) as u64
    }
}

/// A boot module as the fake runtime hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRegion {
    pub data: Vec<u8>,
    pub base_gfn: u64,
}

impl Region for FakeRegion {
    fn bytes(&self) -> &[u8] {
        &self.data
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
    fn gfn(&self, off: u64) -> Option<(u64, u16)> {
        ((off as usize) < self.data.len()).then(|| (self.base_gfn + off / PAGE as u64, (off % PAGE as u64) as u16))
    }
}
