//! Xenstore client over the shared ring (`io/xs_wire.h`), found through
//! `HVM_PARAM_STORE_PFN`/`_EVTCHN`.
//!
//! One request is outstanding at a time (the runtime is single-threaded). Replies are
//! hostile input: ring indices more than a ring apart, a payload longer than
//! `XENSTORE_PAYLOAD_MAX`, an unknown type, a reply to a request id we did not send, a
//! malformed watch event, or no answer before the deadline are errors, never panics.
//! Watch events that arrive while waiting for a reply are queued, bounded and merged
//! (`xen_hv::EventQueue`: a frontend flooding its keys cannot grow the queue without end).
mod client;
pub mod wire;

pub use client::{Tx, XenStore, XsResult};
pub use wire::XsError;
pub use xen_hv::WatchEvent;
