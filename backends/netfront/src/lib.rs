//! The frontend of Xen's PV network protocol (`io/netif.h`), for the driver domain's own
//! network interface: it finds its vif under `device/vif/<n>`, follows the xenbus handshake
//! with the backend (Linux xen-netback in dom0), and moves Ethernet frames through one TX and
//! one RX ring. It follows the blkback crate's pattern: protocol logic in safe Rust over the
//! runtime's traits (`xen-hv`), tested on the host against a mock backend.
//!
//! - the rings: `xen_ring::FrontRing` (`io/ring.h`, shared with blkback), every index the
//!   backend writes checked.
//! - [`xenbus`]: the frontend's state machine, a pure function.
//! - [`vif`]: one connected vif: rings granted once, RX buffers pre-granted and kept posted,
//!   TX buffers pre-granted read-only, `request-rx-copy=1`, `feature-rx-notify=1`; responses
//!   validated (ids, slots, sizes, offsets, chains) before a byte is used.
//! - `testing` (feature `test-utils`): a mock netback enforcing Linux netback's rules.
#![no_std]
#![forbid(unsafe_code)]
#![warn(clippy::arithmetic_side_effects)]

extern crate alloc;

#[cfg(feature = "test-utils")]
pub mod testing;
pub mod vif;
pub mod xenbus;
