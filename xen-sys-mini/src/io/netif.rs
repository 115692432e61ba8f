//! `io/netif.h`: the PV network protocol (netfront ↔ netback). One TX and one RX shared ring
//! per queue (`DEFINE_RING_TYPES(netif_tx, ...)`, `(netif_rx, ...)`), each a page; the
//! frontend grants the pages packets live in.
//!
//! The rules a frontend must keep (Linux netback enforces them, `xen-netback/netback.c`):
//! a TX slot never crosses a page (`offset + size <= 4096`, else "Cross page boundary" and
//! the vif is disabled); a packet uses at most `XEN_NETIF_NR_SLOTS_MIN` slots; the first
//! slot's `size` is the whole packet's. RX responses come back in the slot of their request.

use crate::GrantRef;

/// `XEN_NETIF_NR_SLOTS_MIN`: slots a packet may use at most (netback's minimum guarantee).
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;

/// TX request flags (`NETTXF_*`).
#[doc(alias = "NETTXF_csum_blank")]
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
#[doc(alias = "NETTXF_data_validated")]
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
#[doc(alias = "NETTXF_more_data")]
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
#[doc(alias = "NETTXF_extra_info")]
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// RX response flags (`NETRXF_*`).
#[doc(alias = "NETRXF_data_validated")]
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
#[doc(alias = "NETRXF_csum_blank")]
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
#[doc(alias = "NETRXF_more_data")]
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
#[doc(alias = "NETRXF_extra_info")]
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
#[doc(alias = "NETRXF_gso_prefix")]
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

/// `netif_extra_info` types and flags.
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// Response statuses (`NETIF_RSP_*`); an RX status > 0 is the byte count.
pub const NETIF_RSP_DROPPED: i16 = -2;
pub const NETIF_RSP_ERROR: i16 = -1;
pub const NETIF_RSP_OKAY: i16 = 0;
pub const NETIF_RSP_NULL: i16 = 1;

/// `struct netif_tx_request`
#[doc(alias = "netif_tx_request")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetifTxRequest {
    pub gref: GrantRef,
    pub offset: u16,
    pub flags: u16,
    pub id: u16,
    pub size: u16,
}
const _: () = assert!(core::mem::size_of::<NetifTxRequest>() == 12);

/// `struct netif_tx_response`
#[doc(alias = "netif_tx_response")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetifTxResponse {
    pub id: u16,
    pub status: i16,
}
const _: () = assert!(core::mem::size_of::<NetifTxResponse>() == 4);

/// `struct netif_rx_request`
#[doc(alias = "netif_rx_request")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetifRxRequest {
    pub id: u16,
    pub pad: u16,
    pub gref: GrantRef,
}
const _: () = assert!(core::mem::size_of::<NetifRxRequest>() == 8);

/// `struct netif_rx_response`
#[doc(alias = "netif_rx_response")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetifRxResponse {
    pub id: u16,
    pub offset: u16,
    pub flags: u16,
    pub status: i16,
}
const _: () = assert!(core::mem::size_of::<NetifRxResponse>() == 8);

/// `struct netif_extra_info` with its `u.gso` member (the only one a frontend without
/// multicast or hashing control reads); 8 bytes, fits a TX request or RX response slot.
#[doc(alias = "netif_extra_info")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetifExtraInfo {
    pub type_: u8,
    pub flags: u8,
    pub gso_size: u16,
    pub gso_type: u8,
    pub gso_pad: u8,
    pub gso_features: u16,
}
const _: () = assert!(core::mem::size_of::<NetifExtraInfo>() == 8);

/// Slot sizes of the TX and RX rings (`union netif_tx_sring_entry`, `netif_rx_sring_entry`:
/// the larger of request and response).
pub const NETIF_TX_ENTRY_SIZE: usize = 12;
pub const NETIF_RX_ENTRY_SIZE: usize = 8;
/// Slots of a one-page TX or RX ring (`__CONST_RING_SIZE(netif_tx, 4096)`): 256 each.
pub const NET_TX_RING_SIZE: usize = crate::io::ring::const_ring_size(4096, NETIF_TX_ENTRY_SIZE);
pub const NET_RX_RING_SIZE: usize = crate::io::ring::const_ring_size(4096, NETIF_RX_ENTRY_SIZE);
const _: () = assert!(NET_TX_RING_SIZE == 256 && NET_RX_RING_SIZE == 256);
