//! The frontend side of a shared ring (`io/ring.h`): we produce requests and consume
//! responses. The backend writes `rsp_prod` and the response slots: `rsp_prod` is read once
//! per look and refused if it claims responses to requests we never made
//! (`rsp_prod - rsp_cons > req_prod_pvt - rsp_cons`), which also bounds it by the ring size.
use xen_hv::{MemError, Page};
use xen_sys_mini::io::ring::{const_ring_size, SRING_HEADER_SIZE};

// Offsets in the shared ring header (`io/ring.h`, `struct __name##_sring`).
use xen_sys_mini::io::ring::{
    SRING_REQ_EVENT as REQ_EVENT, SRING_REQ_PROD as REQ_PROD, SRING_RSP_EVENT as RSP_EVENT, SRING_RSP_PROD as RSP_PROD,
};

/// The backend broke the ring protocol: drop the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// `rsp_prod` claims responses to requests we never made.
    RspProdOverflow {
        rsp_prod: u32,
        req_prod: u32,
    },
    Memory(MemError),
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::RspProdOverflow { rsp_prod, req_prod } => {
                write!(f, "rsp_prod {rsp_prod} is ahead of our requests (req_prod {req_prod})")
            }
            RingError::Memory(e) => write!(f, "ring page: {e}"),
        }
    }
}

impl From<MemError> for RingError {
    fn from(e: MemError) -> Self {
        RingError::Memory(e)
    }
}

/// A one-page ring with `slot`-byte entries, initialised by us.
#[derive(Debug)]
pub struct FrontRing<P> {
    page: P,
    slot: usize,
    size: u32,
    req_prod_pvt: u32,
    rsp_cons: u32,
}

impl<P: Page> FrontRing<P> {
    /// `SHARED_RING_INIT` + `FRONT_RING_INIT` on a zeroed page. On failure the page comes
    /// back (it may be granted: its owner must end access before freeing it).
    pub fn new(page: P, slot: usize) -> Result<Self, (P, RingError)> {
        let size = u32::try_from(const_ring_size(4096, slot)).unwrap_or(0);
        let init = [(REQ_PROD, 0), (RSP_PROD, 0), (REQ_EVENT, 1), (RSP_EVENT, 1)];
        for (off, v) in init {
            if let Err(e) = page.store_u32(off, v) {
                return Err((page, RingError::Memory(e)));
            }
        }
        Ok(Self { page, slot, size, req_prod_pvt: 0, rsp_cons: 0 })
    }

    pub fn page(&self) -> &P {
        &self.page
    }

    pub fn into_page(self) -> P {
        self.page
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    fn offset(&self, idx: u32) -> usize {
        let i = (idx & self.size.wrapping_sub(1)) as usize;
        i.saturating_mul(self.slot).saturating_add(SRING_HEADER_SIZE)
    }

    /// Requests not yet answered (in flight), which bounds what we may add.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Free request slots (`RING_FREE_REQUESTS`).
    pub fn free(&self) -> u32 {
        self.size.saturating_sub(self.outstanding())
    }

    /// The slot index the next request goes to.
    pub fn next_slot(&self) -> u32 {
        self.req_prod_pvt & self.size.wrapping_sub(1)
    }

    /// Writes a request into the next slot (not yet visible to the backend).
    pub fn put_request(&mut self, bytes: &[u8]) -> Result<bool, RingError> {
        if self.free() == 0 || bytes.len() > self.slot {
            return Ok(false);
        }
        self.page.write(self.offset(self.req_prod_pvt), bytes)?;
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(true)
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes the requests; whether to notify.
    pub fn push_requests_and_check_notify(&mut self) -> Result<bool, RingError> {
        let old = self.page.load_u32(REQ_PROD)?;
        let new = self.req_prod_pvt;
        // Requests are visible before the index (release store).
        self.page.store_u32(REQ_PROD, new)?;
        self.page.fence();
        let event = self.page.load_u32(REQ_EVENT)?;
        Ok(new.wrapping_sub(event) < new.wrapping_sub(old))
    }

    /// Responses available now, checked against what we asked for.
    pub fn unconsumed_responses(&self) -> Result<u32, RingError> {
        let rsp_prod = self.page.load_u32(RSP_PROD)?;
        let n = rsp_prod.wrapping_sub(self.rsp_cons);
        if n > self.outstanding() {
            return Err(RingError::RspProdOverflow { rsp_prod, req_prod: self.req_prod_pvt });
        }
        Ok(n)
    }

    /// Copies out the next response (`RING_COPY_RESPONSE`) and its slot index.
    pub fn take_response(&mut self, out: &mut [u8]) -> Result<Option<u32>, RingError> {
        if self.unconsumed_responses()? == 0 {
            return Ok(None);
        }
        let slot = self.rsp_cons & self.size.wrapping_sub(1);
        let len = out.len().min(self.slot);
        self.page.read(self.offset(self.rsp_cons), out.get_mut(..len).unwrap_or_default())?;
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(slot))
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: asks to be notified of the next response, then
    /// looks once more (a response that raced the request is not missed).
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_responses()? > 0 {
            return Ok(true);
        }
        self.page.store_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1))?;
        self.page.fence();
        Ok(self.unconsumed_responses()? > 0)
    }
}
