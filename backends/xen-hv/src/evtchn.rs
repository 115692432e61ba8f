//! Event channels: binding, notifying and allocating ports.
use crate::{DomId, EvtchnPort};

/// Allocating event channels for another domain to bind (the frontend's side).
pub trait EvtchnAlloc {
    /// A port of ours that `remote` may bind to; Xen's errno on failure.
    fn alloc_unbound(&mut self, remote: DomId) -> Result<EvtchnPort, i32>;
}

/// Event channels.
pub trait EventChannel {
    /// Binds to the frontend's `remote_port`; returns our port, or Xen's errno.
    fn bind(&mut self, remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort, i32>;
    fn notify(&mut self, port: EvtchnPort);
    fn close(&mut self, port: EvtchnPort);
}
