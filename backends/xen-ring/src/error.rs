//! The one error type of both ring ends.
use core::fmt;

use xen_hv::MemError;

/// The other side broke the ring protocol, or the ring's memory failed: drop the
/// connection (the caller decides whose fault it is by which end it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The frontend's `req_prod` runs more than a ring ahead of our responses
    /// (`RING_REQUEST_PROD_OVERFLOW`).
    ReqProdOverflow {
        /// The `req_prod` read.
        req_prod: u32,
        /// Our private `rsp_prod_pvt` it was compared with.
        rsp_prod: u32,
    },
    /// The backend's `rsp_prod` claims responses to requests we never made (the
    /// front-end counterpart of `RING_REQUEST_PROD_OVERFLOW`).
    RspProdOverflow {
        /// The `rsp_prod` read.
        rsp_prod: u32,
        /// Our private `req_prod_pvt` it was compared with.
        req_prod: u32,
    },
    /// A page access failed (a mapping went away, or a read-only mapping).
    Memory(MemError),
    /// The pages and slot size give no usable ring (`__CONST_RING_SIZE` is 0, or the
    /// slots do not fit).
    BadSize,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::ReqProdOverflow { req_prod, rsp_prod } => {
                write!(f, "req_prod {req_prod} runs more than a ring ahead of rsp_prod {rsp_prod}")
            }
            RingError::RspProdOverflow { rsp_prod, req_prod } => {
                write!(f, "rsp_prod {rsp_prod} is ahead of our requests (req_prod {req_prod})")
            }
            RingError::Memory(e) => write!(f, "ring page: {e}"),
            RingError::BadSize => f.write_str("no usable ring in that many pages"),
        }
    }
}

impl From<MemError> for RingError {
    fn from(e: MemError) -> Self {
        RingError::Memory(e)
    }
}
