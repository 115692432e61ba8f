//! `io/console.h`: the PV console ring.

/// `XENCONS_RING_IDX`
pub type XenconsRingIdx = u32;

/// Size of `xencons_interface.in`.
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of `xencons_interface.out`.
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `struct xencons_interface`
#[doc(alias = "xencons_interface")]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct XenconsInterface {
    pub in_: [u8; XENCONS_IN_SIZE],
    pub out: [u8; XENCONS_OUT_SIZE],
    pub in_cons: XenconsRingIdx,
    pub in_prod: XenconsRingIdx,
    pub out_cons: XenconsRingIdx,
    pub out_prod: XenconsRingIdx,
}
const _: () = assert!(core::mem::size_of::<XenconsInterface>() == 3088);
