//! Backing stores, split-phase (cf. Tock TRD 3): `submit` starts an I/O and keeps its
//! buffers; `complete` hands every finished I/O back, buffers included, on success and on
//! error alike. Data moves between the frontend's mapped page and the store in one copy,
//! with no intermediate buffer.
//!
//! - `traits`: the contract ([`BlockStore`], [`FrameBacked`], [`ScratchFrames`], [`Store`]);
//! - `ram`, `module`, `null`, [`nbd`], [`nvme`]: the stores; [`local`]: the driver domain's
//!   own controllers, as the service opens them;
//! - [`any`]: every kind as one type, and building one from a `target=`.
pub mod any;
pub mod local;
mod module;
pub mod nbd;
mod null;
pub mod nvme;
mod ram;
mod traits;

pub use module::RegionDisk;
pub use null::NullStore;
pub use ram::{FrameDisk, RamBacking, RamStore, StoreCounters, ZERO_PER_PASS};
pub use traits::{
    BlockStore, Completion, DiskInfo, FrameBacked, IoOp, IoSeg, ScratchFrames, ScratchPool, Store, StoreError, StoreIo,
    SCRATCH_PAGES,
};
