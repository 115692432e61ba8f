//! Xen's public ABI, trimmed to what a PVH block-backend driver domain needs.
//!
//! One module per Xen public header (`xen/include/public/...`), same names, C names kept as
//! `#[doc(alias)]`. Only `#[repr(C)]` types, constants and wire enums live here: no logic,
//! no `unsafe`. Every struct's size is asserted at compile time, and
//! `tests/layout.rs` checks the size and every field offset (and the constants) against the
//! real C headers from Debian's `libxen-dev`, for x86_64 and, where a 32-bit frontend can
//! be on the other end of a ring, for x86_32.
#![no_std]
#![forbid(unsafe_code)]

pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod io;
pub mod memory;
pub mod sched;
pub mod vcpu;
pub mod xen;

pub use xen::*;
