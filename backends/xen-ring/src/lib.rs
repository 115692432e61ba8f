//! Xen's shared ring (`xen/include/public/io/ring.h`), written once.
//!
//! A ring is a header (`req_prod`, `req_event`, `rsp_prod`, `rsp_event`, then padding to
//! [`SRING_HEADER_SIZE`](xen_sys_mini::io::ring::SRING_HEADER_SIZE)) followed by a
//! power-of-two number of slots, each holding a request or its response
//! (`DEFINE_RING_TYPES`' union). The slot size is the protocol's (`blkif` native or
//! x86_32, `netif` TX or RX), so it is a parameter here, not a type.
//!
//! Both ends treat every index the other side writes as hostile: a producer index is read
//! once per look and refused if it claims more entries than can exist
//! ([`BackRing::unconsumed`]: `RING_REQUEST_PROD_OVERFLOW`; [`FrontRing::unconsumed_responses`]:
//! the response-side check), and every entry is copied out of its slot once
//! (`RING_COPY_REQUEST` / `RING_COPY_RESPONSE`) before anyone looks at it.
//!
//! Module map: [`mem`] (pages seen as one byte range) ← [`back`] and [`front`] (the two
//! ends) ← [`error`] (the one error type).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::arithmetic_side_effects)]

extern crate alloc;

pub mod back;
pub mod error;
pub mod front;
pub mod mem;

pub use back::BackRing;
pub use error::RingError;
pub use front::FrontRing;
pub use mem::RingMem;
