//! `hvm/*.h` (and `arch-x86/hvm/start_info.h`).
pub mod hvm_op;
pub mod params;
pub mod start_info;
