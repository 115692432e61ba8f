//! The back end of a blkif shared ring (`io/ring.h`), over one or more mapped pages.
//!
//! The frontend owns `req_prod` and `rsp_event`; we own `rsp_prod` and `req_event`, and
//! keep our own `req_cons` and `rsp_prod_pvt` privately (never read back from the page).
//! `req_prod` is read once per check (acquire); if it claims more requests than the ring
//! can hold beyond what we answered (`RING_REQUEST_PROD_OVERFLOW`) the ring is broken and
//! the frontend gets disconnected. Each request is copied out of its slot once
//! (`RING_COPY_REQUEST`): the engine only ever looks at that copy.
use alloc::vec::Vec;

use xen_sys_mini::io::ring::SRING_HEADER_SIZE;
use xen_sys_mini::XEN_PAGE_SIZE;

use crate::abi::{encode_response, Abi, MAX_SLOT};
use crate::hv::{MemError, Page};

// Offsets in the shared ring header (`io/ring.h`, `struct __name##_sring`).
use xen_sys_mini::io::ring::{
    SRING_REQ_EVENT as REQ_EVENT, SRING_REQ_PROD as REQ_PROD, SRING_RSP_EVENT as RSP_EVENT, SRING_RSP_PROD as RSP_PROD,
};

/// The frontend broke the ring protocol: disconnect it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// `req_prod` more than a ring ahead of our responses (`RING_REQUEST_PROD_OVERFLOW`).
    ProdOverflow { req_prod: u32, rsp_prod: u32 },
    /// A page access failed (a mapping went away).
    Memory(MemError),
    /// The page count gives no usable ring.
    BadSize,
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::ProdOverflow { req_prod, rsp_prod } => {
                write!(f, "req_prod {req_prod} runs more than a ring ahead of rsp_prod {rsp_prod}")
            }
            RingError::Memory(e) => write!(f, "ring page: {e}"),
            RingError::BadSize => f.write_str("no usable ring in that many pages"),
        }
    }
}

/// Byte offset of slot `idx` (`RING_GET_REQUEST`/`RING_GET_RESPONSE`: `idx & (size - 1)`;
/// `size` is a power of two).
fn slot_offset(abi: Abi, size: u32, idx: u32) -> usize {
    let i = (idx & size.wrapping_sub(1)) as usize;
    i.saturating_mul(abi.slot_size()).saturating_add(SRING_HEADER_SIZE)
}

/// Several pages seen as one byte range (a multi-page ring is contiguous to the frontend,
/// but each page is mapped separately here).
#[derive(Debug)]
pub struct RingMem<P> {
    pages: Vec<P>,
}

impl<P: Page> RingMem<P> {
    pub fn new(pages: Vec<P>) -> Self {
        Self { pages }
    }

    pub fn into_pages(self) -> Vec<P> {
        self.pages
    }

    fn len(&self) -> usize {
        self.pages.len().saturating_mul(XEN_PAGE_SIZE)
    }

    fn page(&self, off: usize) -> Result<(&P, usize), MemError> {
        let p = self.pages.get(off / XEN_PAGE_SIZE).ok_or(MemError::OutOfBounds)?;
        Ok((p, off % XEN_PAGE_SIZE))
    }

    /// Copies `dst.len()` bytes at `off`, across page boundaries.
    pub fn read(&self, mut off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        let mut done = 0;
        while done < dst.len() {
            let (p, in_page) = self.page(off)?;
            let n = XEN_PAGE_SIZE.saturating_sub(in_page).min(dst.len().saturating_sub(done));
            let end = done.saturating_add(n);
            p.read(in_page, dst.get_mut(done..end).ok_or(MemError::OutOfBounds)?)?;
            done = end;
            off = off.saturating_add(n);
        }
        Ok(())
    }

    pub fn write(&self, mut off: usize, src: &[u8]) -> Result<(), MemError> {
        let mut done = 0;
        while done < src.len() {
            let (p, in_page) = self.page(off)?;
            let n = XEN_PAGE_SIZE.saturating_sub(in_page).min(src.len().saturating_sub(done));
            let end = done.saturating_add(n);
            p.write(in_page, src.get(done..end).ok_or(MemError::OutOfBounds)?)?;
            done = end;
            off = off.saturating_add(n);
        }
        Ok(())
    }

    fn header(&self) -> Result<&P, MemError> {
        self.pages.first().ok_or(MemError::OutOfBounds)
    }
}

/// Our side of one ring.
#[derive(Debug)]
pub struct BackRing<P> {
    mem: RingMem<P>,
    abi: Abi,
    size: u32,
    req_cons: u32,
    rsp_prod_pvt: u32,
}

impl<P: Page> BackRing<P> {
    /// A ring over `pages` (as mapped, in order). Like `BACK_RING_ATTACH`, our private
    /// indices start at the `rsp_prod` the frontend initialised (0 after
    /// `SHARED_RING_INIT`); every later check is relative to them.
    pub fn new(pages: Vec<P>, abi: Abi) -> Result<Self, RingError> {
        let size = abi.ring_size(pages.len());
        let needed = size.checked_mul(abi.slot_size()).and_then(|b| b.checked_add(SRING_HEADER_SIZE));
        let size = u32::try_from(size).map_err(|_| RingError::BadSize)?;
        let mem = RingMem::new(pages);
        if size == 0 || needed.is_none_or(|n| mem.len() < n) {
            return Err(RingError::BadSize);
        }
        // BACK_RING_ATTACH: start consuming where responses were produced.
        let start = mem.header().and_then(|h| h.load_u32(RSP_PROD)).map_err(RingError::Memory)?;
        Ok(Self { mem, abi, size, req_cons: start, rsp_prod_pvt: start })
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn abi(&self) -> Abi {
        self.abi
    }

    /// Requests taken and not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    pub fn into_pages(self) -> Vec<P> {
        self.mem.into_pages()
    }

    fn slot_off(&self, idx: u32) -> usize {
        slot_offset(self.abi, self.size, idx)
    }

    /// `RING_HAS_UNCONSUMED_REQUESTS` with `RING_REQUEST_PROD_OVERFLOW` checked first.
    pub fn unconsumed(&self) -> Result<u32, RingError> {
        let h = self.mem.header().map_err(RingError::Memory)?;
        let prod = h.load_u32(REQ_PROD).map_err(RingError::Memory)?;
        if prod.wrapping_sub(self.rsp_prod_pvt) > self.size {
            return Err(RingError::ProdOverflow { req_prod: prod, rsp_prod: self.rsp_prod_pvt });
        }
        let req = prod.wrapping_sub(self.req_cons);
        let rsp = self.size.wrapping_sub(self.req_cons.wrapping_sub(self.rsp_prod_pvt));
        Ok(req.min(rsp))
    }

    /// Copies the next request slot out (`RING_COPY_REQUEST`) and consumes it. `None` when
    /// taking it would overrun our responses (`RING_REQUEST_CONS_OVERFLOW`): the caller
    /// called without checking `unconsumed`.
    pub fn take(&mut self) -> Result<Option<[u8; MAX_SLOT]>, RingError> {
        if self.req_cons.wrapping_sub(self.rsp_prod_pvt) >= self.size {
            return Ok(None);
        }
        let mut slot = [0u8; MAX_SLOT];
        let n = self.abi.slot_size().min(MAX_SLOT);
        self.mem.read(self.slot_off(self.req_cons), &mut slot[..n]).map_err(RingError::Memory)?;
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(slot))
    }

    /// Writes a response into the next response slot (padding zeroed). Responses beyond
    /// the requests taken are refused (`false`): every response answers a taken request.
    pub fn push_response(&mut self, id: u64, operation: u8, status: i16) -> Result<bool, RingError> {
        if self.outstanding() == 0 {
            return Ok(false);
        }
        let (bytes, n) = encode_response(self.abi, id, operation, status);
        self.mem
            .write(self.slot_off(self.rsp_prod_pvt), bytes.get(..n).unwrap_or_default())
            .map_err(RingError::Memory)?;
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(true)
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes the responses; true if the frontend
    /// asked to be notified (its `rsp_event` falls within the new responses).
    pub fn push_responses_and_check_notify(&mut self) -> Result<bool, RingError> {
        let h = self.mem.header().map_err(RingError::Memory)?;
        let old = h.load_u32(RSP_PROD).map_err(RingError::Memory)?;
        let new = self.rsp_prod_pvt;
        if old == new {
            return Ok(false);
        }
        // The responses must be visible before the index (store_u32 is release).
        h.store_u32(RSP_PROD, new).map_err(RingError::Memory)?;
        h.fence();
        let event = h.load_u32(RSP_EVENT).map_err(RingError::Memory)?;
        Ok(new.wrapping_sub(event) < new.wrapping_sub(old))
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: before going idle, ask to be notified for the next
    /// request, then look once more (closing the race with a request pushed meanwhile).
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.unconsumed()? > 0 {
            return Ok(true);
        }
        let h = self.mem.header().map_err(RingError::Memory)?;
        h.store_u32(REQ_EVENT, self.req_cons.wrapping_add(1)).map_err(RingError::Memory)?;
        h.fence();
        Ok(self.unconsumed()? > 0)
    }
}

/// The frontend's side, for the mock frontend and tests: pushes requests, reads responses.
#[derive(Debug)]
pub struct FrontRing<P> {
    mem: RingMem<P>,
    abi: Abi,
    size: u32,
    req_prod_pvt: u32,
    rsp_cons: u32,
}

impl<P: Page> FrontRing<P> {
    /// `SHARED_RING_INIT` + `FRONT_RING_INIT`.
    pub fn init(pages: Vec<P>, abi: Abi) -> Result<Self, RingError> {
        let size = u32::try_from(abi.ring_size(pages.len())).map_err(|_| RingError::BadSize)?;
        if size == 0 {
            return Err(RingError::BadSize);
        }
        let mem = RingMem::new(pages);
        let h = mem.header().map_err(RingError::Memory)?;
        for off in [REQ_PROD, RSP_PROD] {
            h.store_u32(off, 0).map_err(RingError::Memory)?;
        }
        for off in [REQ_EVENT, RSP_EVENT] {
            h.store_u32(off, 1).map_err(RingError::Memory)?;
        }
        Ok(Self { mem, abi, size, req_prod_pvt: 0, rsp_cons: 0 })
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Free request slots.
    pub fn free(&self) -> u32 {
        self.size.wrapping_sub(self.req_prod_pvt.wrapping_sub(self.rsp_cons))
    }

    /// Writes a request slot (raw bytes: tests put anything there).
    pub fn put_request(&mut self, slot: &[u8; MAX_SLOT]) -> Result<u32, RingError> {
        let idx = self.req_prod_pvt;
        let off = slot_offset(self.abi, self.size, idx);
        self.mem.write(off, slot.get(..self.abi.slot_size()).unwrap_or_default()).map_err(RingError::Memory)?;
        self.req_prod_pvt = idx.wrapping_add(1);
        Ok(idx)
    }

    /// Offset of request slot `idx` in the ring (for tests that rewrite a slot).
    pub fn slot_offset(&self, idx: u32) -> usize {
        slot_offset(self.abi, self.size, idx)
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`.
    pub fn push_requests(&mut self) -> Result<bool, RingError> {
        let h = self.mem.header().map_err(RingError::Memory)?;
        let old = h.load_u32(REQ_PROD).map_err(RingError::Memory)?;
        let new = self.req_prod_pvt;
        h.store_u32(REQ_PROD, new).map_err(RingError::Memory)?;
        h.fence();
        let ev = h.load_u32(REQ_EVENT).map_err(RingError::Memory)?;
        Ok(new.wrapping_sub(ev) < new.wrapping_sub(old))
    }

    /// Sets `req_prod` to anything (a hostile frontend).
    pub fn force_req_prod(&mut self, v: u32) -> Result<(), RingError> {
        self.mem.header().and_then(|h| h.store_u32(REQ_PROD, v)).map_err(RingError::Memory)
    }

    /// Takes every available response: (id, operation, status).
    pub fn take_responses(&mut self) -> Result<Vec<(u64, u8, i16)>, RingError> {
        let h = self.mem.header().map_err(RingError::Memory)?;
        let prod = h.load_u32(RSP_PROD).map_err(RingError::Memory)?;
        let mut out = Vec::new();
        while self.rsp_cons != prod {
            let off = slot_offset(self.abi, self.size, self.rsp_cons);
            let mut b = [0u8; 16];
            let n = self.abi.rsp_size().min(16);
            self.mem.read(off, &mut b[..n]).map_err(RingError::Memory)?;
            out.push(crate::abi::decode_response(self.abi, &b[..n]));
            self.rsp_cons = self.rsp_cons.wrapping_add(1);
        }
        // RING_FINAL_CHECK_FOR_RESPONSES: ask for the next one.
        h.store_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1)).map_err(RingError::Memory)?;
        Ok(out)
    }

    /// The raw bytes of response slot `idx` (to check padding).
    pub fn response_bytes(&self, idx: u32) -> Result<[u8; 16], RingError> {
        let mut b = [0u8; 16];
        let n = self.abi.rsp_size().min(16);
        self.mem.read(slot_offset(self.abi, self.size, idx), &mut b[..n]).map_err(RingError::Memory)?;
        Ok(b)
    }
}
