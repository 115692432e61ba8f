//! The blkif backend engine (filled by the blkback-engine issue).
//!
//! Safe Rust, `no_std` + `alloc`, generic over the hypervisor traits the kernel
//! implements, so the whole protocol runs and is tested on the host.
#![no_std]
#![forbid(unsafe_code)]
