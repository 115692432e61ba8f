//! What can refuse or fail a device, typed: each variant says who caused it, `errno()` is
//! what goes into the device's error node (`xenbus_dev_error`'s `<errno> <message>`), as
//! [`Invalid::status`](crate::request::Invalid::status) is for a request's response.
use alloc::string::String;
use core::fmt;

use xen_ring::RingError;
use xen_sys_mini::errno::{EBUSY, ECONNREFUSED, EINVAL, EIO, ENODEV, ENOENT, ENOMEM};

use crate::budget::HeapUse;
use crate::engine::ConnError;
use crate::frontend_keys::ConfigError;
use crate::hv::StoreErr;
use crate::store::nbd::ConnectError;
use crate::target::TargetError;

/// Why a device was refused, or why its connection failed or was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// The toolstack (dom0's libxl) wrote keys we cannot use.
    Toolstack(ToolstackError),
    /// The frontend's keys are missing or wrong (the frontend's fault).
    Frontend(ConfigError),
    /// The connection could not be made (the frontend's fault but for `ConnError::Local`).
    Connect(ConnError),
    /// The driver domain has no heap for it (our limit: another guest's fair share).
    NoHeap {
        /// What the heap was for.
        what: HeapUse,
        /// Bytes it needs.
        need: usize,
        /// Bytes there were.
        free: usize,
    },
    /// The frontend broke the ring protocol.
    Ring(RingError),
    /// `target=` (the backend's `params`, written by whoever attached the disk) does not
    /// parse.
    Target {
        /// The `params` value.
        params: String,
        /// What is wrong with it.
        err: TargetError,
    },
    /// The store `target=` names cannot be had (memory, a boot module, the network).
    Store {
        /// The `params` value.
        params: String,
        /// Why.
        err: OpenError,
    },
    /// A xenstore operation failed (xenstored, or a node the toolstack removed).
    Xenstore(StoreErr),
    /// The device has no store (it was refused before; said so then).
    NoStore,
}

impl DeviceError {
    /// The errno of the device's error node.
    pub fn errno(&self) -> i32 {
        match self {
            DeviceError::Toolstack(_)
            | DeviceError::Frontend(_)
            | DeviceError::Connect(_)
            | DeviceError::Target { .. }
            | DeviceError::NoStore => EINVAL,
            DeviceError::NoHeap { .. } => ENOMEM,
            DeviceError::Ring(_) | DeviceError::Xenstore(_) => EIO,
            DeviceError::Store { err, .. } => err.errno(),
        }
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Toolstack(e) => e.fmt(f),
            DeviceError::Frontend(e) => e.fmt(f),
            DeviceError::Connect(e) => e.fmt(f),
            DeviceError::NoHeap { what: HeapUse::Device, .. } => f.write_str("no heap left for another device"),
            DeviceError::NoHeap { what: HeapUse::Connection, need, free } => {
                write!(f, "no heap left for another connection (needs {need} bytes, {free} free)")
            }
            DeviceError::Ring(e) => write!(f, "ring protocol violation: {e}"),
            DeviceError::Target { params, err } => write!(f, "target `{params}`: {err}"),
            DeviceError::Store { params, err } => write!(f, "target `{params}`: {err}"),
            DeviceError::Xenstore(e) => write!(f, "xenstore: {e}"),
            DeviceError::NoStore => f.write_str("no store"),
        }
    }
}

impl From<StoreErr> for DeviceError {
    fn from(e: StoreErr) -> Self {
        DeviceError::Xenstore(e)
    }
}

/// What is wrong with the toolstack's keys of a backend directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolstackError {
    /// No `frontend` key.
    NoFrontend,
    /// `frontend-id` missing or not a domain id.
    BadFrontendId,
    /// The `frontend` path is outside the frontend domain's tree (as Linux's xenbus
    /// checks).
    ForeignFrontend {
        /// The path given.
        path: String,
        /// The `frontend-id` given.
        dom: u16,
    },
}

impl fmt::Display for ToolstackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolstackError::NoFrontend => f.write_str("no `frontend` key"),
            ToolstackError::BadFrontendId => f.write_str("bad `frontend-id`"),
            ToolstackError::ForeignFrontend { path, dom } => write!(f, "frontend path {path} is not in domain {dom}"),
        }
    }
}

/// Why the store a `target=` names cannot be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Not enough of the driver domain's memory for the RAM disk.
    RamTooLarge {
        /// The disk's size, MiB.
        mib: u64,
        /// Memory free, MiB.
        free_mib: u64,
    },
    /// The RAM disk's frame list cannot be allocated (the heap).
    FrameListHeap {
        /// Its size, if known.
        bytes: Option<usize>,
    },
    /// The frames ran out while allocating (`what`: the disk or the swap scratch pool).
    OutOfFrames(&'static str),
    /// No heap for the swap path's scratch pool.
    ScratchHeap,
    /// No boot module of that number.
    NoModule(usize),
    /// The boot module is served by another device.
    ModuleBusy(usize),
    /// The NBD server cannot be reached.
    Network(ConnectError),
    /// The driver domain has no NVMe controller of that number (`found`: how many it has).
    NoController { ctl: u8, found: usize },
    /// The controller has no such namespace (or it has no blocks).
    NoNamespace { ctl: u8, nsid: u32 },
    /// The controller failed (bring-up, a fatal status, too many resets): why.
    ControllerFailed { ctl: u8, why: String },
}

impl OpenError {
    /// The errno that stands for it.
    pub fn errno(&self) -> i32 {
        match self {
            OpenError::RamTooLarge { .. }
            | OpenError::FrameListHeap { .. }
            | OpenError::OutOfFrames(_)
            | OpenError::ScratchHeap => ENOMEM,
            OpenError::NoModule(_) => ENOENT,
            OpenError::ModuleBusy(_) => EBUSY,
            OpenError::Network(_) => ECONNREFUSED,
            OpenError::NoController { .. } | OpenError::NoNamespace { .. } => ENODEV,
            OpenError::ControllerFailed { .. } => EIO,
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::RamTooLarge { mib, free_mib } => {
                write!(f, "not enough memory for a {mib} MiB RAM disk ({free_mib} MiB free)")
            }
            OpenError::FrameListHeap { bytes: Some(b) } => {
                write!(f, "no heap for the RAM disk's frame list ({b} bytes)")
            }
            OpenError::FrameListHeap { bytes: None } => f.write_str("no heap for the RAM disk's frame list"),
            OpenError::OutOfFrames(what) => write!(f, "out of frames for the {what}"),
            OpenError::ScratchHeap => f.write_str("no heap for the scratch pool"),
            OpenError::NoModule(n) => write!(f, "no boot module {n} (give the driver domain ramdisk=...)"),
            OpenError::ModuleBusy(n) => write!(f, "boot module {n} is already served"),
            OpenError::Network(e) => e.fmt(f),
            OpenError::NoController { ctl, found: 0 } => write!(
                f,
                "no NVMe controller {ctl}: the driver domain owns none (an HVM driver domain with pci=[...] in its xl config)"
            ),
            OpenError::NoController { ctl, found } => {
                write!(f, "no NVMe controller {ctl}: the driver domain owns {found} (numbered from 0)")
            }
            OpenError::NoNamespace { ctl, nsid } => write!(f, "NVMe controller {ctl} has no namespace {nsid}"),
            OpenError::ControllerFailed { ctl, why } => write!(f, "NVMe controller {ctl} failed: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn error_nodes_take_their_errno_from_the_error() {
        assert_eq!(DeviceError::Ring(RingError::BadSize).errno(), EIO);
        assert_eq!(DeviceError::Frontend(ConfigError::TooManyQueues(9)).errno(), EINVAL);
        assert_eq!(DeviceError::NoHeap { what: HeapUse::Connection, need: 2, free: 1 }.errno(), ENOMEM);
        assert_eq!(DeviceError::Xenstore(StoreErr::Again).errno(), EIO);
        let busy = DeviceError::Store { params: "module".into(), err: OpenError::ModuleBusy(0) };
        assert_eq!(busy.errno(), EBUSY);
        assert_eq!(busy.to_string(), "target `module`: boot module 0 is already served");
        let net = DeviceError::Store { params: "nbd://x/y".into(), err: OpenError::Network(ConnectError::NoAddress) };
        assert_eq!(net.errno(), ECONNREFUSED);
        assert_eq!(net.to_string(), "target `nbd://x/y`: the network has no address yet (no DHCP lease)");
    }

    #[test]
    fn texts_say_who_and_what() {
        let e = DeviceError::Toolstack(ToolstackError::ForeignFrontend { path: "/local/domain/3/x".into(), dom: 2 });
        assert_eq!(e.to_string(), "frontend path /local/domain/3/x is not in domain 2");
        let e = DeviceError::Ring(RingError::ReqProdOverflow { req_prod: 99, rsp_prod: 0 });
        assert_eq!(e.to_string(), "ring protocol violation: req_prod 99 runs more than a ring ahead of rsp_prod 0");
        assert_eq!(
            OpenError::RamTooLarge { mib: 64, free_mib: 10 }.to_string(),
            "not enough memory for a 64 MiB RAM disk (10 MiB free)"
        );
    }
}
