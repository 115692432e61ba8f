//! The front end of a ring: it produces requests and consumes responses (netfront; the
//! mock blkfront).
//!
//! The backend owns `rsp_prod` and `req_event`; we own `req_prod` and `rsp_event`, and keep
//! `req_prod_pvt` and `rsp_cons` privately.
use alloc::vec::Vec;

use xen_hv::Page;
use xen_sys_mini::io::ring::{SRING_REQ_EVENT, SRING_REQ_PROD, SRING_RSP_EVENT, SRING_RSP_PROD};

use crate::mem::{needs_notify, RingMem};
use crate::RingError;

/// Our side of one ring, as a frontend.
#[derive(Debug)]
pub struct FrontRing<P> {
    mem: RingMem<P>,
    req_prod_pvt: u32,
    rsp_cons: u32,
}

impl<P: Page> FrontRing<P> {
    /// `SHARED_RING_INIT` + `FRONT_RING_INIT` over `pages` (ours, about to be granted)
    /// with `slot`-byte entries. On failure the pages come back (they may be granted: their
    /// owner ends access before freeing them).
    pub fn init(pages: Vec<P>, slot: usize) -> Result<Self, (Vec<P>, RingError)> {
        let mem = RingMem::new(pages, slot).map_err(|p| (p, RingError::BadSize))?;
        let init = [(SRING_REQ_PROD, 0), (SRING_RSP_PROD, 0), (SRING_REQ_EVENT, 1), (SRING_RSP_EVENT, 1)];
        for (off, v) in init {
            if let Err(e) = mem.header().and_then(|h| h.store_u32(off, v)) {
                return Err((mem.into_pages(), RingError::Memory(e)));
            }
        }
        Ok(Self { mem, req_prod_pvt: 0, rsp_cons: 0 })
    }

    /// Slots in the ring.
    pub fn size(&self) -> u32 {
        self.mem.size()
    }

    /// The ring's memory (tests rewrite raw slots through it).
    pub fn mem(&self) -> &RingMem<P> {
        &self.mem
    }

    /// The pages, in order.
    pub fn pages(&self) -> &[P] {
        self.mem.pages()
    }

    /// The pages back, in order.
    pub fn into_pages(self) -> Vec<P> {
        self.mem.into_pages()
    }

    /// Requests not yet answered (in flight), which bounds what we may add.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Free request slots (`RING_FREE_REQUESTS`).
    pub fn free(&self) -> u32 {
        self.size().saturating_sub(self.outstanding())
    }

    /// Byte offset of the slot of free-running index `idx`.
    pub fn slot_offset(&self, idx: u32) -> usize {
        self.mem.slot_offset(idx)
    }

    /// Writes a request (at most a slot's bytes) into the next slot, not yet visible to
    /// the backend; its free-running index, or `None` when the ring is full.
    pub fn put_request(&mut self, bytes: &[u8]) -> Result<Option<u32>, RingError> {
        if self.free() == 0 {
            return Ok(None);
        }
        let idx = self.req_prod_pvt;
        self.mem.write_slot(idx, bytes)?;
        self.req_prod_pvt = idx.wrapping_add(1);
        Ok(Some(idx))
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes the requests (release store after
    /// the slots), then tells whether the backend asked to be notified (`req_event`).
    pub fn push_requests_and_check_notify(&mut self) -> Result<bool, RingError> {
        let h = self.mem.header()?;
        let old = h.load_u32(SRING_REQ_PROD)?;
        let new = self.req_prod_pvt;
        h.store_u32(SRING_REQ_PROD, new)?;
        h.fence();
        Ok(needs_notify(old, new, h.load_u32(SRING_REQ_EVENT)?))
    }

    /// Responses available now. `rsp_prod` is read once and refused if it claims
    /// responses to requests we never made (`rsp_prod - rsp_cons > req_prod_pvt -
    /// rsp_cons`, which also bounds it by the ring size).
    pub fn unconsumed_responses(&self) -> Result<u32, RingError> {
        let rsp_prod = self.mem.header()?.load_u32(SRING_RSP_PROD)?;
        let n = rsp_prod.wrapping_sub(self.rsp_cons);
        if n > self.outstanding() {
            return Err(RingError::RspProdOverflow { rsp_prod, req_prod: self.req_prod_pvt });
        }
        Ok(n)
    }

    /// Copies out the next response (`RING_COPY_RESPONSE`) into `out` (at most a slot's
    /// bytes) and consumes it; its slot number (`idx & (size - 1)`), or `None` if none is
    /// waiting.
    pub fn take_response(&mut self, out: &mut [u8]) -> Result<Option<u32>, RingError> {
        if self.unconsumed_responses()? == 0 {
            return Ok(None);
        }
        let slot = self.rsp_cons & self.size().wrapping_sub(1);
        self.mem.read_slot(self.rsp_cons, out)?;
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(slot))
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: asks to be notified of the next response
    /// (`rsp_event`), then looks once more (a response that raced the request is not
    /// missed).
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_responses()? > 0 {
            return Ok(true);
        }
        let h = self.mem.header()?;
        h.store_u32(SRING_RSP_EVENT, self.rsp_cons.wrapping_add(1))?;
        h.fence();
        Ok(self.unconsumed_responses()? > 0)
    }

    /// Sets the shared `req_prod` to anything, as a hostile frontend would (tests of a
    /// backend; a real frontend never calls it).
    pub fn force_req_prod(&mut self, v: u32) -> Result<(), RingError> {
        Ok(self.mem.header()?.store_u32(SRING_REQ_PROD, v)?)
    }
}
