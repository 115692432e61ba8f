//! The driver domain's PVH runtime: what a bare-metal Rust guest needs to boot from
//! `xl create` and drive Xen through hypercalls, as a library. All of the project's
//! `unsafe` lives in this crate; an application (`backends/xen-blkback-rs`, the blkback driver domain)
//! is a small safe binary that names its entry with [`entry!`] and gets a [`Runtime`].
//!
//! Modules are leaves, one Xen mechanism each (cf. Mini-OS), and only import modules listed
//! before them here (checked by reading each file's `use crate::...`):
//!
//! `arch` (entry, page tables, exceptions, instructions), `shared` (memory others write) →
//! `hypercall` → `hvm` → `mem` (boot info, frames, heap, `shared_info`, the grant region) →
//! `pci` (config space and BARs of a passed-through device) → `evtchn` → `time` → `sched` → `console` → `gnttab` → `xenstore` → `selftest` and `boot`
//! (the boot sequence, panic and exception reports); this file only wires. The one call
//! the other way is the CPU's: the entry code calls `kernel_main`, and exceptions reach the
//! console through the report hook the boot sequence installs.
//!
//! The traits applications are written against (`Grants`, `EventChannel`, `XenStore`,
//! `Frames`, `Region`, `Page`) are in the `xen-hv` crate; the types here implement them.
//!
//! On the host the crate builds too (for `cargo test` of its pure parts, such as the
//! xenstore wire format, and for clippy); only the entry code, the exception stubs, the
//! global allocator and the panic handler are left out there.
#![no_std]
// x86_64 only: `usize` is 64 bits, and register-sized values are converted all over the
// boot and hypercall code. Values that come from other domains (xenstore replies, ring
// indices) are range-checked explicitly before any conversion.
#![allow(clippy::cast_possible_truncation)]

extern crate alloc;

#[macro_use]
pub mod console;
pub mod arch;
pub mod boot;
pub mod evtchn;
pub mod gnttab;
pub mod hvm;
pub mod hypercall;
pub mod mem;
pub mod pci;
pub mod sched;
pub mod selftest;
pub mod shared;
pub mod time;
pub mod xenstore;

pub use xen_hv as hv;

pub use boot::{boot, crash, poweroff, Runtime, VERSION};
