//! A fake hypervisor for host tests (feature `fake`), shared by every backend's tests,
//! proptests and fuzzers (cf. virtio-queue's `mock.rs`): one grant table for all domains that
//! enforces Xen's rules and counts hypercalls and live mappings, event channels, xenstore
//! with xenstored's watch semantics, and the runtime's frames and boot modules.
// Test scaffolding: the arithmetic and casts below are on the tests' own sizes and
// counters, not on anything another domain controls in production.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation, clippy::missing_panics_doc, unused_imports)]

pub mod evtchn;
pub mod frames;
pub mod grants;
pub mod memory;
pub mod xenstore;

pub use evtchn::*;
pub use frames::*;
pub use grants::*;
pub use memory::*;
pub use xenstore::*;
