//! The blkback driver domain: boot (the `kernel` runtime) → typed configuration (the
//! command line, parsed once) → the blkback service → the loop. It wires libraries and
//! holds no logic of its own.
//!
//! The loop: clear the event ports, handle xenstore events, run every ring, fire timers;
//! when no ring has work left, sleep in `SCHEDOP_poll` on xenstore's port and every ring's
//! until the service's next deadline (or a second, for the statistics).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use blkback::service::{Note, Service};
use kernel::console::{self, Level};
use kernel::gnttab::Gnttab;
use kernel::mem::{BootModule, FrameAllocator, SharedPage};
use kernel::{arch, evtchn, gnttab, hypercall, mem, sched, time, Runtime};
use netfront::vif::{Vif, VifConfig};
use xen_blkback_rs::net::{NetConnector, NetStack};
use xen_blkback_rs::{Config, Mode};

/// The watch token of the vif's backend state.
const VIF_TOKEN: &str = "vif";

type Net = Rc<RefCell<NetStack<SharedPage>>>;

/// The vif `device/vif/0` and its stack, if the domain has a vif and `ip=`.
fn bring_up_network(xs: &mut kernel::xenstore::XenStore, domid: u16, cfg: &Config) -> Option<Net> {
    let fe = format!("/local/domain/{domid}/device/vif/0");
    let vif_cfg = match VifConfig::read(xs, &fe) {
        Ok(c) => c,
        Err(e) => {
            if cfg.ip.is_some() {
                kernel::warn!("ip= given but no usable vif: {e}");
            }
            return None;
        }
    };
    // `ip=` on the command line, else the vif's `ip` key (xl's `vif = [ "ip=..." ]`, a /24).
    let from_key = || {
        let v = kernel::hv::XenStore::read(xs, &format!("{}/ip", vif_cfg.be)).ok().flatten()?;
        let addr = xen_blkback_rs::parse_ipv4(v.split_whitespace().next()?)?;
        Some(xen_blkback_rs::net::Ipv4Config { addr, prefix: 24, gateway: None })
    };
    let Some(ip) = cfg.ip.or_else(from_key) else {
        kernel::warn!("a vif but no address (ip=<a.b.c.d>/<prefix>, or ip= in the vif spec): no network");
        return None;
    };
    let [a, b, c, d] = ip.addr;
    kernel::info!("network: vif {fe} (backend {}), {a}.{b}.{c}.{d}/{}", vif_cfg.be, ip.prefix);
    let vif: Vif<SharedPage> = Vif::new(vif_cfg);
    if let Err(e) = kernel::hv::XenStore::watch(xs, &vif.watch_path(), VIF_TOKEN) {
        kernel::error!("cannot watch the vif's backend: {e}");
    }
    Some(Rc::new(RefCell::new(NetStack::new(vif, ip, arch::rdtsc()))))
}

kernel::entry!(run);

fn run(rt: Runtime) -> ! {
    let Runtime { cmdline, domid, mut xenstore, modules } = rt;
    let cfg = Config::parse(&cmdline);
    for w in &cfg.ignored {
        kernel::warn!("{w}");
    }
    if cfg.debug {
        console::set_max_level(Level::Debug);
    }
    match cfg.mode {
        Mode::Serve => {}
        Mode::Selftest => {
            if kernel::selftest::run(&mut xenstore, domid) {
                kernel::poweroff()
            } else {
                kernel::crash()
            }
        }
        Mode::CrashUd2 => {
            kernel::info!("crashtest: executing ud2");
            arch::invalid_opcode()
        }
        Mode::CrashPanic => panic!("crashtest: deliberate panic"),
    }
    let net = bring_up_network(&mut xenstore, domid, &cfg);
    let connector = NetConnector { net: net.clone() };
    let mut svc: Service<Gnttab, FrameAllocator, BootModule, NetConnector<SharedPage>> =
        Service::new(domid, cfg.blk, FrameAllocator, modules, connector);
    if let Err(e) = svc.start(&mut xenstore) {
        kernel::error!("cannot watch {}: {e}", svc.base());
    }
    let d = svc.defaults();
    kernel::info!(
        "blkback: serving vbds under {} ({:?} path, persistent grants {}, up to {} indirect segments)",
        svc.base(),
        d.path,
        if d.persistent { "on" } else { "off" },
        d.max_indirect_segments
    );
    let (mut g, mut ev) = (Gnttab, evtchn::Evtchn);
    let mut ports = Vec::new();
    // Loop iterations and sleeps, published with the other counters.
    let (mut loops, mut polls) = (0u64, 0u64);
    loop {
        loops = loops.wrapping_add(1);
        ports.clear();
        ports.push(xenstore.port());
        svc.ports(&mut ports);
        if let Some(p) = net.as_ref().and_then(|n| n.borrow().vif.port()) {
            ports.push(p);
        }
        // Clear first, then look: an event that arrives meanwhile re-sets the bit and the
        // next poll returns at once.
        for &p in &ports {
            evtchn::clear(p);
        }
        let now = time::system_time_ns();
        svc.handle_xenstore(&mut xenstore, &mut g, &mut ev, now);
        let foreign = svc.take_foreign_events();
        if let Some(n) = net.as_ref() {
            if foreign.iter().any(|e| e.token == VIF_TOKEN) {
                let mut n = n.borrow_mut();
                let before = n.vif.state();
                if let Err(e) = n.vif.update(&mut xenstore, &mut g, &mut ev, &mut FrameAllocator) {
                    kernel::error!("vif: {e}");
                }
                if n.vif.state() != before {
                    kernel::info!("vif: {before:?} -> {:?}", n.vif.state());
                }
            }
            n.borrow_mut().poll(&mut ev, now);
        }
        let more = svc.process(&mut xenstore, &mut g, &mut ev, now);
        if let Some(n) = net.as_ref() {
            // What the stores queued on their sockets goes out now.
            n.borrow_mut().poll(&mut ev, now);
        }
        // One clock read per iteration (each one traps to Xen when the TSC is emulated).
        svc.timers(&mut xenstore, now, || domain_counters(loops, polls));
        for n in svc.take_notes() {
            match n {
                Note::Debug(s) => kernel::debug!("{s}"),
                Note::Info(s) => kernel::info!("{s}"),
                Note::Warn(s) => kernel::warn!("{s}"),
                Note::Error(s) => kernel::error!("{s}"),
            }
        }
        if !more {
            polls = polls.wrapping_add(1);
            let tcp = net.as_ref().and_then(|n| n.borrow_mut().poll_at(now)).unwrap_or(u64::MAX);
            let _ = sched::poll(&ports, svc.next_deadline().min(tcp));
        }
    }
}

/// The domain-wide counters under `data/blkback/`: foreign pages mapped now, grant calls,
/// safety-net unmaps, free memory, the loop's iterations and sleeps, hypercalls by kind.
fn domain_counters(loops: u64, polls: u64) -> Vec<(&'static str, u64)> {
    use xen_sys_mini::hypercall::{EVENT_CHANNEL_OP, GRANT_TABLE_OP, SCHED_OP};
    let c = gnttab::counters();
    alloc::vec![
        ("mapped", c.mapped_now),
        ("map_calls", c.map_calls),
        ("unmap_calls", c.unmap_calls),
        ("copy_calls", c.copy_calls),
        ("safety_net_unmaps", c.safety_net_unmaps),
        ("free_kib", mem::free_bytes() >> 10),
        ("heap_used_kib", (mem::heap::usage().0 >> 10) as u64),
        ("loops", loops),
        ("polls", polls),
        ("hc_sched", hypercall::count(SCHED_OP)),
        ("hc_evtchn", hypercall::count(EVENT_CHANNEL_OP)),
        ("hc_gnttab", hypercall::count(GRANT_TABLE_OP)),
    ]
}

#[cfg(not(target_os = "none"))]
fn main() {
    // The image is a PVH guest; on the host this crate builds so clippy and tests cover it.
    eprintln!("the driver domain is a PVH guest image: build it with `cargo xtask build`");
}
