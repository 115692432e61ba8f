//! The runtime's contract with the code above it: the hypervisor mechanisms as a few small
//! traits (cf. vm-memory's `GuestMemory`, Tock's HILs), saying what is used, never how it is
//! provided. `kernel` implements them with hypercalls; backends are generic over them and
//! host-tested against fakes (`fake`, feature `fake`).
//!
//! One vocabulary: the runtime and every backend name a grant to map, a copy op, a watch
//! event or a failure with the types below; nothing is converted field by field between
//! crates.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(feature = "fake")]
pub mod fake;

mod count;
mod events;
mod evtchn;
mod frames;
mod grants;
mod page;
mod xenstore;

pub use count::Count;
pub use events::{EventQueue, EVENT_QUEUE_CAP};
pub use evtchn::*;
pub use frames::*;
pub use grants::*;
pub use page::*;
pub use xenstore::*;

pub use xen_sys_mini::{DomId, EvtchnPort, GrantRef};
