//! One connected frontend: its rings, the in-flight requests, its data path, and the ring
//! pass that moves data. The request's states and the one place that answers are in
//! `lifecycle`; indirect descriptor pages in `indirect`; the data paths in `path`.
//!
//! A pass over all queues of a connection:
//! 1. take as many requests as the in-flight bound allows (the rest stay on the ring and
//!    count as `oo_req`), copy each out once and validate the copy;
//! 2. map the indirect pages of every indirect request in **one** batch, read their
//!    segment descriptors once and validate them;
//! 3. map every data segment in **one** batch (persistent grants: only the misses), or on
//!    the copy path build `GNTTABOP_copy` ops between grants and store frames;
//! 4. hand the I/O to the store, collect completions, write responses (padding zeroed,
//!    `id` echoed), notify if the frontend asked;
//! 5. unmap every transient mapping of the pass in **one** batch.
//!
//! So a pass costs at most 2 map + 1 unmap hypercalls on the map path, none once warm on
//! the persistent path, and one copy hypercall per batch limit on the copy path.
mod connection;
mod indirect;
mod lifecycle;
mod path;
mod swap;

use connection::release;
pub(crate) use connection::try_vec;
pub use connection::{
    pass_heap_bytes, ConnError, ConnectParams, Connection, DataPath, PassReport, QueueParams, TURN_SEGMENTS,
};
pub use swap::SwapMode;
