//! The blkif backend engine: everything a block backend does between Xen's mechanisms and
//! a disk, as safe Rust over small traits (`hv`), so it runs and is tested on the host.
//!
//! Data plane:
//! - [`abi`]: decoding ring slots (native x86_64 and x86_32 layouts) into plain values; the
//!   ring itself is `xen_ring::BackRing`, every index the frontend writes checked.
//! - [`request`]: validation of one copied request into a [`request::Request`].
//! - [`engine`]: one connected frontend: ring passes, batched grant work, data paths
//!   (map, persistent, copy, swap, noop), responses, statistics; [`persistent`]: the pool
//!   of kept grants; [`stats`]: the counters.
//! - [`store`]: the split-phase [`store::BlockStore`] and its capabilities
//!   ([`store::FrameBacked`], [`store::ScratchFrames`]); RAM (frames or a boot module), null
//!   and NBD stores; [`store::any`] builds one from a [`target`].
//!
//! Control plane:
//! - [`xenbus`]: the backend's xenbus state machine, a pure function.
//! - [`frontend_keys`]: parsing the frontend's xenstore keys against what was advertised.
//! - [`device`]: one vbd: the state machine's actions carried out against xenstore.
//! - [`service`]: the driver domain's blkback: discovery under `backend/vbd`, the device
//!   table and its watch routing, linger and removal, the statistics trickle.
//! - [`budget`]: every heap and pool number and formula, one owner.
//! - [`error`]: what can refuse or fail a device, with the errno of its error node.
//! - [`target`]: parsing `target=` (the backend's `params`).
//! - [`quote`]: frontend strings escaped and cut before they reach a message.
//! - `testing` (feature `test-utils`): the mock Linux-like frontend and harness over
//!   `xen_hv::fake`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(clippy::arithmetic_side_effects)]

extern crate alloc;

/// The hypervisor traits this engine is generic over (the runtime's contract, `xen-hv`).
pub use xen_hv as hv;

pub mod abi;
pub mod budget;
pub mod device;
pub mod engine;
pub mod error;
pub mod frontend_keys;
pub mod persistent;
pub mod quote;
pub mod request;
pub mod service;
pub mod stats;
pub mod store;
pub mod target;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod xenbus;
