//! `event_channel.h`: `HYPERVISOR_event_channel_op` commands.
use crate::xen::{DomId, EvtchnPort};

#[doc(alias = "EVTCHNOP_bind_interdomain")]
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
#[doc(alias = "EVTCHNOP_bind_virq")]
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
#[doc(alias = "EVTCHNOP_close")]
pub const EVTCHNOP_CLOSE: u32 = 3;
#[doc(alias = "EVTCHNOP_send")]
pub const EVTCHNOP_SEND: u32 = 4;
#[doc(alias = "EVTCHNOP_status")]
pub const EVTCHNOP_STATUS: u32 = 5;
#[doc(alias = "EVTCHNOP_alloc_unbound")]
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
#[doc(alias = "EVTCHNOP_bind_vcpu")]
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
#[doc(alias = "EVTCHNOP_unmask")]
pub const EVTCHNOP_UNMASK: u32 = 9;

#[doc(alias = "EVTCHNSTAT_closed")]
pub const EVTCHNSTAT_CLOSED: u32 = 0;
#[doc(alias = "EVTCHNSTAT_unbound")]
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
#[doc(alias = "EVTCHNSTAT_interdomain")]
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
#[doc(alias = "EVTCHNSTAT_pirq")]
pub const EVTCHNSTAT_PIRQ: u32 = 3;
#[doc(alias = "EVTCHNSTAT_virq")]
pub const EVTCHNSTAT_VIRQ: u32 = 4;
#[doc(alias = "EVTCHNSTAT_ipi")]
pub const EVTCHNSTAT_IPI: u32 = 5;

/// `VIRQ_TIMER`: fires when a `VCPUOP_set_singleshot_timer` deadline passes.
pub const VIRQ_TIMER: u32 = 0;

/// `struct evtchn_alloc_unbound`: a port in `dom` that `remote_dom` may bind to.
#[doc(alias = "evtchn_alloc_unbound")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct EvtchnAllocUnbound {
    pub dom: DomId,
    pub remote_dom: DomId,
    /// OUT
    pub port: EvtchnPort,
}
const _: () = assert!(core::mem::size_of::<EvtchnAllocUnbound>() == 8);

/// `struct evtchn_bind_interdomain`
#[doc(alias = "evtchn_bind_interdomain")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct EvtchnBindInterdomain {
    pub remote_dom: DomId,
    pub remote_port: EvtchnPort,
    /// OUT
    pub local_port: EvtchnPort,
}
const _: () = assert!(core::mem::size_of::<EvtchnBindInterdomain>() == 12);

/// `struct evtchn_bind_virq`
#[doc(alias = "evtchn_bind_virq")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct EvtchnBindVirq {
    pub virq: u32,
    pub vcpu: u32,
    /// OUT
    pub port: EvtchnPort,
}
const _: () = assert!(core::mem::size_of::<EvtchnBindVirq>() == 12);

/// `struct evtchn_send`
#[doc(alias = "evtchn_send")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct EvtchnSend {
    pub port: EvtchnPort,
}
const _: () = assert!(core::mem::size_of::<EvtchnSend>() == 4);

/// `struct evtchn_close`
#[doc(alias = "evtchn_close")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct EvtchnClose {
    pub port: EvtchnPort,
}
const _: () = assert!(core::mem::size_of::<EvtchnClose>() == 4);

/// `struct evtchn_unmask`
#[doc(alias = "evtchn_unmask")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct EvtchnUnmask {
    pub port: EvtchnPort,
}
const _: () = assert!(core::mem::size_of::<EvtchnUnmask>() == 4);

/// `struct evtchn_status.u.interdomain`
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct EvtchnStatusInterdomain {
    pub dom: DomId,
    pub port: EvtchnPort,
}

/// `struct evtchn_status`. The C union `u` is kept as its largest member
/// (`interdomain`); `unbound.dom` is `interdomain.dom`, `pirq`/`virq` alias `dom`'s word.
#[doc(alias = "evtchn_status")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct EvtchnStatus {
    pub dom: DomId,
    pub port: EvtchnPort,
    /// OUT: `EVTCHNSTAT_*`
    pub status: u32,
    pub vcpu: u32,
    pub u: EvtchnStatusInterdomain,
}
const _: () = assert!(core::mem::size_of::<EvtchnStatus>() == 24);
