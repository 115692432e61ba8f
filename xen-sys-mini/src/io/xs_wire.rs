//! `io/xs_wire.h`: the xenstore wire protocol and the shared ring of a domain's
//! connection to xenstored.

/// `enum xsd_sockmsg_type`
pub mod xs {
    #[doc(alias = "XS_CONTROL")]
    pub const CONTROL: u32 = 0;
    #[doc(alias = "XS_DIRECTORY")]
    pub const DIRECTORY: u32 = 1;
    #[doc(alias = "XS_READ")]
    pub const READ: u32 = 2;
    #[doc(alias = "XS_GET_PERMS")]
    pub const GET_PERMS: u32 = 3;
    #[doc(alias = "XS_WATCH")]
    pub const WATCH: u32 = 4;
    #[doc(alias = "XS_UNWATCH")]
    pub const UNWATCH: u32 = 5;
    #[doc(alias = "XS_TRANSACTION_START")]
    pub const TRANSACTION_START: u32 = 6;
    #[doc(alias = "XS_TRANSACTION_END")]
    pub const TRANSACTION_END: u32 = 7;
    #[doc(alias = "XS_INTRODUCE")]
    pub const INTRODUCE: u32 = 8;
    #[doc(alias = "XS_RELEASE")]
    pub const RELEASE: u32 = 9;
    #[doc(alias = "XS_GET_DOMAIN_PATH")]
    pub const GET_DOMAIN_PATH: u32 = 10;
    #[doc(alias = "XS_WRITE")]
    pub const WRITE: u32 = 11;
    #[doc(alias = "XS_MKDIR")]
    pub const MKDIR: u32 = 12;
    #[doc(alias = "XS_RM")]
    pub const RM: u32 = 13;
    #[doc(alias = "XS_SET_PERMS")]
    pub const SET_PERMS: u32 = 14;
    /// Asynchronous: `path\0token\0`, never an answer to a request.
    #[doc(alias = "XS_WATCH_EVENT")]
    pub const WATCH_EVENT: u32 = 15;
    /// The payload is an error name such as `ENOENT\0`.
    #[doc(alias = "XS_ERROR")]
    pub const ERROR: u32 = 16;
    #[doc(alias = "XS_IS_DOMAIN_INTRODUCED")]
    pub const IS_DOMAIN_INTRODUCED: u32 = 17;
    #[doc(alias = "XS_RESUME")]
    pub const RESUME: u32 = 18;
    #[doc(alias = "XS_SET_TARGET")]
    pub const SET_TARGET: u32 = 19;
    #[doc(alias = "XS_RESET_WATCHES")]
    pub const RESET_WATCHES: u32 = 21;
    #[doc(alias = "XS_DIRECTORY_PART")]
    pub const DIRECTORY_PART: u32 = 22;
    /// `XS_TYPE_COUNT`: one past the last valid type.
    #[doc(alias = "XS_TYPE_COUNT")]
    pub const TYPE_COUNT: u32 = 23;
}

/// `struct xsd_sockmsg`: the header before every request, reply and watch event.
#[doc(alias = "xsd_sockmsg")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XsdSockmsg {
    /// `XS_*`
    pub type_: u32,
    /// Echoed in the reply; 0 in watch events.
    pub req_id: u32,
    /// Transaction id, 0 outside a transaction.
    pub tx_id: u32,
    /// Bytes of payload after the header, at most `XENSTORE_PAYLOAD_MAX`.
    pub len: u32,
}
const _: () = assert!(core::mem::size_of::<XsdSockmsg>() == 16);

/// `XENSTORE_RING_IDX`
pub type XenstoreRingIdx = u32;

/// `XENSTORE_RING_SIZE`
pub const XENSTORE_RING_SIZE: usize = 1024;
/// `XENSTORE_PAYLOAD_MAX`: the longest payload either side may send.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`
pub const XENSTORE_REL_PATH_MAX: usize = 2048;
/// `XENSTORE_SERVER_FEATURE_RECONNECTION`
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `XENSTORE_CONNECTED`
pub const XENSTORE_CONNECTED: u32 = 0;
/// `XENSTORE_RECONNECT`
pub const XENSTORE_RECONNECT: u32 = 1;

/// `struct xenstore_domain_interface`: the xenstore ring page.
#[doc(alias = "xenstore_domain_interface")]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct XenstoreDomainInterface {
    pub req: [u8; XENSTORE_RING_SIZE],
    pub rsp: [u8; XENSTORE_RING_SIZE],
    pub req_cons: XenstoreRingIdx,
    pub req_prod: XenstoreRingIdx,
    pub rsp_cons: XenstoreRingIdx,
    pub rsp_prod: XenstoreRingIdx,
    pub server_features: u32,
    pub connection: u32,
    pub error: u32,
}
const _: () = assert!(core::mem::size_of::<XenstoreDomainInterface>() == 2076);

/// `xsd_errors`: the error names xenstored sends in `XS_ERROR` replies, with the errno
/// each stands for.
pub const XSD_ERRORS: &[(&str, i32)] = &[
    ("EINVAL", 22),
    ("EACCES", 13),
    ("EEXIST", 17),
    ("EISDIR", 21),
    ("ENOENT", 2),
    ("ENOMEM", 12),
    ("ENOSPC", 28),
    ("EIO", 5),
    ("ENOTEMPTY", 39),
    ("ENOSYS", 38),
    ("EROFS", 30),
    ("EBUSY", 16),
    ("EAGAIN", 11),
    ("EISCONN", 106),
    ("E2BIG", 7),
    ("EPERM", 1),
];
