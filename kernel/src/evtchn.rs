//! Event channels (`event_channel.h`), 2-level ABI: the pending and mask bitmaps live in
//! `shared_info` and are updated with atomics (Xen sets pending bits concurrently).
use core::sync::atomic::{AtomicU64, Ordering};

use xen_sys_mini::event_channel::*;
use xen_sys_mini::hypercall::EVENT_CHANNEL_OP;
use xen_sys_mini::{DomId, EvtchnPort, SharedInfo, DOMID_SELF, EVTCHN_WORDS};

use crate::hypercall::{self, XenResult};
use crate::mem;

/// Ports the 2-level ABI can name.
pub const MAX_PORTS: u32 = (EVTCHN_WORDS * 64) as u32;

fn op<T>(cmd: u32, arg: &mut T) -> XenResult<u64> {
    // SAFETY: every caller passes the structure `event_channel.h` defines for `cmd`.
    unsafe { hypercall::op(EVENT_CHANNEL_OP, cmd, arg) }
}

/// A port `remote` may bind to (`EVTCHNOP_alloc_unbound`).
pub fn alloc_unbound(remote: DomId) -> XenResult<EvtchnPort> {
    let mut a = EvtchnAllocUnbound { dom: DOMID_SELF, remote_dom: remote, port: 0 };
    op(EVTCHNOP_ALLOC_UNBOUND, &mut a).map(|_| a.port)
}

/// Connects to `remote_port` of `remote` (`EVTCHNOP_bind_interdomain`); returns our port.
pub fn bind_interdomain(remote: DomId, remote_port: EvtchnPort) -> XenResult<EvtchnPort> {
    let mut a = EvtchnBindInterdomain { remote_dom: remote, remote_port, local_port: 0 };
    op(EVTCHNOP_BIND_INTERDOMAIN, &mut a).map(|_| a.local_port)
}

/// Signals the other end of `port`.
pub fn send(port: EvtchnPort) -> XenResult<()> {
    let mut a = EvtchnSend { port };
    op(EVTCHNOP_SEND, &mut a).map(|_| ())
}

/// `send`, for paths where a failed notification changes nothing we could act on.
pub fn notify(port: EvtchnPort) {
    let _ = send(port);
}

pub fn close(port: EvtchnPort) -> XenResult<()> {
    let mut a = EvtchnClose { port };
    op(EVTCHNOP_CLOSE, &mut a).map(|_| ())
}

/// `EVTCHNOP_status` of one of our ports: (`EVTCHNSTAT_*`, remote domain, remote port).
pub fn status(port: EvtchnPort) -> XenResult<(u32, DomId, EvtchnPort)> {
    let mut a = EvtchnStatus { dom: DOMID_SELF, port, ..Default::default() };
    op(EVTCHNOP_STATUS, &mut a).map(|_| (a.status, a.u.dom, a.u.port))
}

/// Runs `f` on the bitmap word holding `port` in the `shared_info` field at `field`.
fn with_bit<R>(port: EvtchnPort, field: usize, f: impl FnOnce(&AtomicU64, u64) -> R) -> Option<R> {
    if port >= MAX_PORTS {
        return None;
    }
    let si = mem::shared_info()?;
    let word = si.atomic_u64(field + (port as usize / 64) * 8).ok()?;
    Some(f(word, 1u64 << (port % 64)))
}

const PENDING: usize = core::mem::offset_of!(SharedInfo, evtchn_pending);
const MASK: usize = core::mem::offset_of!(SharedInfo, evtchn_mask);

/// Whether `port` is pending.
pub fn pending(port: EvtchnPort) -> bool {
    with_bit(port, PENDING, |w, b| w.load(Ordering::Acquire) & b != 0).unwrap_or(false)
}

/// Clears `port`'s pending bit. Clear *before* looking at the ring the port guards, so an
/// event raised while we process is seen by the next `sched::poll`.
pub fn clear(port: EvtchnPort) {
    with_bit(port, PENDING, |w, b| w.fetch_and(!b, Ordering::AcqRel));
}

/// Masks `port`: no upcall (we take none anyway); `SCHEDOP_poll` still wakes on it.
pub fn mask(port: EvtchnPort) {
    with_bit(port, MASK, |w, b| w.fetch_or(b, Ordering::AcqRel));
}

/// Unmasks `port` through Xen (which re-raises a pending event).
pub fn unmask(port: EvtchnPort) -> XenResult<()> {
    let mut a = EvtchnUnmask { port };
    op(EVTCHNOP_UNMASK, &mut a).map(|_| ())
}

/// Whether `port` is masked.
pub fn masked(port: EvtchnPort) -> bool {
    with_bit(port, MASK, |w, b| w.load(Ordering::Acquire) & b != 0).unwrap_or(false)
}

/// Event channels as the runtime's `EventChannel`: every bound port is masked (no upcalls;
/// `SCHEDOP_poll` still wakes on it).
#[derive(Debug, Default, Clone, Copy)]
pub struct Evtchn;

impl xen_hv::EventChannel for Evtchn {
    fn bind(&mut self, remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort, i32> {
        let p = bind_interdomain(remote, remote_port).map_err(|e| e.0)?;
        mask(p);
        Ok(p)
    }
    fn notify(&mut self, port: EvtchnPort) {
        notify(port);
    }
    fn close(&mut self, port: EvtchnPort) {
        let _ = close(port);
        clear(port);
    }
}

impl xen_hv::EvtchnAlloc for Evtchn {
    fn alloc_unbound(&mut self, remote: DomId) -> Result<EvtchnPort, i32> {
        let p = alloc_unbound(remote).map_err(|e| e.0)?;
        mask(p);
        Ok(p)
    }
}
