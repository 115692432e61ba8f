//! Event channels between domains.
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use xen_sys_mini::grant_table::gntst;

use super::memory::BACKEND;
use crate::*;

/// Event channels: frontends allocate unbound ports; the backend binds to them.
#[derive(Debug, Default)]
pub struct FakeEvtchn {
    unbound: BTreeMap<(DomId, EvtchnPort), ()>,
    bound: BTreeMap<EvtchnPort, (DomId, EvtchnPort)>,
    next: EvtchnPort,
    /// Notifications sent by the backend, per (frontend, frontend port).
    pub notified: BTreeMap<(DomId, EvtchnPort), u64>,
    /// Notifications sent on ports the caller allocated (`EvtchnAlloc`), per port.
    pub notified_local: BTreeMap<EvtchnPort, u64>,
}

impl FakeEvtchn {
    pub fn alloc_unbound(&mut self, dom: DomId) -> EvtchnPort {
        self.next += 1;
        self.unbound.insert((dom, self.next), ());
        self.next
    }
    pub fn bound_count(&self) -> usize {
        self.bound.len()
    }
    pub fn notifications(&self, dom: DomId, port: EvtchnPort) -> u64 {
        self.notified.get(&(dom, port)).copied().unwrap_or(0)
    }
}

impl EventChannel for FakeEvtchn {
    fn bind(&mut self, remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort, i32> {
        if self.unbound.remove(&(remote, remote_port)).is_none() {
            return Err(22);
        }
        self.next += 1;
        self.bound.insert(self.next, (remote, remote_port));
        Ok(self.next)
    }
    fn notify(&mut self, port: EvtchnPort) {
        if let Some(&k) = self.bound.get(&port) {
            *self.notified.entry(k).or_insert(0) += 1;
        } else {
            *self.notified_local.entry(port).or_insert(0) += 1;
        }
    }
    fn close(&mut self, port: EvtchnPort) {
        self.bound.remove(&port);
    }
}

/// The caller (the driver domain, [`BACKEND`]) allocating a port for `remote` to bind: the
/// other side binds it with `bind(BACKEND, port)`.
impl EvtchnAlloc for FakeEvtchn {
    fn alloc_unbound(&mut self, _remote: DomId) -> Result<EvtchnPort, i32> {
        Ok(FakeEvtchn::alloc_unbound(self, BACKEND))
    }
}
