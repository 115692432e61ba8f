//! The back end of a ring: it consumes requests and produces responses (blkback; the mock
//! netback).
//!
//! The frontend owns `req_prod` and `rsp_event`; we own `rsp_prod` and `req_event`, and
//! keep `req_cons` and `rsp_prod_pvt` privately (never read back from the page, which the
//! frontend can rewrite at any time).
use alloc::vec::Vec;

use xen_hv::Page;
use xen_sys_mini::io::ring::{SRING_REQ_EVENT, SRING_REQ_PROD, SRING_RSP_EVENT, SRING_RSP_PROD};

use crate::mem::{needs_notify, RingMem};
use crate::RingError;

/// Our side of one ring, as a backend.
#[derive(Debug)]
pub struct BackRing<P> {
    mem: RingMem<P>,
    req_cons: u32,
    rsp_prod_pvt: u32,
}

impl<P: Page> BackRing<P> {
    /// `BACK_RING_ATTACH` over `pages` (as mapped, in ring order) with `slot`-byte
    /// entries: our private indices start at the `rsp_prod` the frontend initialised (0
    /// after `SHARED_RING_INIT`), and every later check is relative to them. On failure
    /// the pages come back (the caller unmaps them).
    pub fn attach(pages: Vec<P>, slot: usize) -> Result<Self, (Vec<P>, RingError)> {
        let mem = RingMem::new(pages, slot).map_err(|p| (p, RingError::BadSize))?;
        match mem.header().and_then(|h| h.load_u32(SRING_RSP_PROD)) {
            Ok(start) => Ok(Self { mem, req_cons: start, rsp_prod_pvt: start }),
            Err(e) => Err((mem.into_pages(), RingError::Memory(e))),
        }
    }

    /// Slots in the ring.
    pub fn size(&self) -> u32 {
        self.mem.size()
    }

    /// The ring's memory (tests look at raw slots through it).
    pub fn mem(&self) -> &RingMem<P> {
        &self.mem
    }

    /// The pages back, in order.
    pub fn into_pages(self) -> Vec<P> {
        self.mem.into_pages()
    }

    /// Requests taken and not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// `RING_HAS_UNCONSUMED_REQUESTS`, with `RING_REQUEST_PROD_OVERFLOW` checked first:
    /// `req_prod` is read once (acquire), and refused if it claims more requests than the
    /// ring holds beyond what we answered.
    pub fn unconsumed(&self) -> Result<u32, RingError> {
        let prod = self.mem.header()?.load_u32(SRING_REQ_PROD)?;
        let size = self.mem.size();
        if prod.wrapping_sub(self.rsp_prod_pvt) > size {
            return Err(RingError::ReqProdOverflow { req_prod: prod, rsp_prod: self.rsp_prod_pvt });
        }
        let req = prod.wrapping_sub(self.req_cons);
        let rsp = size.wrapping_sub(self.req_cons.wrapping_sub(self.rsp_prod_pvt));
        Ok(req.min(rsp))
    }

    /// Copies the next request slot out (`RING_COPY_REQUEST`: the caller only ever looks
    /// at this copy) and consumes it. Call it at most [`unconsumed`](Self::unconsumed)
    /// times per look; `None` when taking one more would overrun our responses
    /// (`RING_REQUEST_CONS_OVERFLOW`). Bytes past the slot size stay zero.
    pub fn take<const N: usize>(&mut self) -> Result<Option<[u8; N]>, RingError> {
        if self.outstanding() >= self.mem.size() {
            return Ok(None);
        }
        let mut slot = [0u8; N];
        self.mem.read_slot(self.req_cons, &mut slot)?;
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(slot))
    }

    /// Writes a response (at most a slot's bytes) into the next response slot, not yet
    /// visible to the frontend. Refused (`false`) when every taken request is answered:
    /// each response answers one taken request.
    pub fn push_response(&mut self, bytes: &[u8]) -> Result<bool, RingError> {
        if self.outstanding() == 0 {
            return Ok(false);
        }
        self.mem.write_slot(self.rsp_prod_pvt, bytes)?;
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(true)
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes the responses (the slots are
    /// visible before the index: `store_u32` is release), then tells whether the frontend
    /// asked to be notified (its `rsp_event` falls within the new ones).
    pub fn push_responses_and_check_notify(&mut self) -> Result<bool, RingError> {
        let h = self.mem.header()?;
        let old = h.load_u32(SRING_RSP_PROD)?;
        let new = self.rsp_prod_pvt;
        if old == new {
            return Ok(false);
        }
        h.store_u32(SRING_RSP_PROD, new)?;
        h.fence();
        Ok(needs_notify(old, new, h.load_u32(SRING_RSP_EVENT)?))
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: before going idle, ask to be notified of the next
    /// request (`req_event`), then look once more, closing the race with a request pushed
    /// meanwhile.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.unconsumed()? > 0 {
            return Ok(true);
        }
        let h = self.mem.header()?;
        h.store_u32(SRING_REQ_EVENT, self.req_cons.wrapping_add(1))?;
        h.fence();
        Ok(self.unconsumed()? > 0)
    }

    /// Sets the shared `rsp_prod` to anything, as a lying backend would (hostile-backend
    /// tests of a frontend; a real backend never calls it).
    pub fn force_rsp_prod(&mut self, v: u32) -> Result<(), RingError> {
        Ok(self.mem.header()?.store_u32(SRING_RSP_PROD, v)?)
    }
}
