//! Test utilities (feature `test-utils`), shared by unit tests, integration tests,
//! proptests and the fuzzer (cf. virtio-queue's `mock.rs`):
//!
//! - [`FakeGrants`]: a grant table that enforces what Xen enforces (unknown refs, refs granted
//!   to another domain, write-mapping a read-only grant, copying into one, ending access while
//!   mapped) and counts hypercalls and live mappings; mappings of read-only grants refuse
//!   writes and count the attempt.
//! - [`FakeXenStore`], [`FakeEvtchn`].
//! - [`MockFrontend`]: behaves like Linux blkfront: xenstore handshake, single- and multi-page
//!   rings, several queues, native or x86_32 layout, persistent grants, direct and indirect
//!   requests, reconnects; plus raw access for hostile tests.
//! - [`Harness`]: a backend device, a fake hypervisor and frontends, driven step by step.
//!
//! The fake hypervisor itself (pages, grant tables, event channels, xenstore, frames) is
//! `xen_hv::fake`, shared with other backends' tests; here: [`frames`] (store memory the fake
//! grant table reaches by GFN), [`frontend`] (the mock blkfront), [`harness`] (a backend
//! wired to all of them).
//! The fuzz target's model lives with the fuzz target (`tests/fuzz_model/`), not here.
// Test scaffolding: the arithmetic and casts below are on the tests' own sizes and
// counters, not on anything a frontend controls in production.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::too_many_arguments,
    clippy::missing_panics_doc
)]

pub mod frames;
pub mod frontend;
pub mod harness;
pub mod nbd_pipe;

pub use frames::*;
pub use frontend::*;
pub use harness::*;
pub use nbd_pipe::*;
/// The fake hypervisor (grant tables, event channels, xenstore, frames): `xen-hv`'s.
pub use xen_hv::fake::*;

/// What every file here uses.
mod prelude {
    pub(super) use alloc::collections::BTreeMap;
    pub(super) use alloc::format;
    pub(super) use alloc::rc::Rc;
    pub(super) use alloc::string::{String, ToString};
    pub(super) use alloc::vec;
    pub(super) use alloc::vec::Vec;

    pub(super) use xen_sys_mini::io::blkif::*;
    pub(super) use xen_sys_mini::io::xenbus::XenbusState;

    pub(super) use crate::abi::{decode_response, encode_request, encode_segment, Abi, RawBody, RawRequest, MAX_SLOT};
    pub(super) use crate::device::{Device, DeviceConfig};
    pub(super) use crate::hv::*;
    pub(super) use crate::store::{RamBacking, RamStore, ScratchPool};
    pub(super) use xen_ring::FrontRing;
}
