//! The blkback driver domain: boot (the `kernel` runtime) → typed configuration (the
//! command line, parsed once) → the blkback service → the loop. It wires libraries and
//! holds no logic of its own.
//!
//! The loop: clear the event ports, handle xenstore events, move the vif's frames, run
//! every ring, fire timers; when no ring has work left, sleep in `SCHEDOP_poll` on
//! xenstore's port, every ring's and the vif's until the service's next deadline (or a
//! second, for the statistics) or the network stack's.
//!
//! Feature `net` (default): the vif, TCP/IP and `nbd://` disks (`network.rs`); without it
//! the image serves RAM, boot-module and null disks only.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use blkback::service::{Note, Service};
use kernel::console::{self, Level};
use kernel::gnttab::Gnttab;
use kernel::mem::{BootModule, FrameAllocator};
use kernel::{arch, evtchn, gnttab, hypercall, mem, sched, time, Runtime};
use xen_blkback_rs::{Config, Mode};

mod local;
#[cfg(feature = "net")]
mod network;

/// Without the `net` feature the image has no network: `nbd://` disks are refused with
/// that reason (a smaller image for RAM and boot-module disks only).
#[cfg(not(feature = "net"))]
mod network {
    use kernel::evtchn::Evtchn;
    use kernel::gnttab::Gnttab;
    use kernel::hv::{EvtchnPort, WatchEvent};
    use kernel::xenstore::XenStore;
    use xen_blkback_rs::Config;

    pub type Connector = blkback::store::nbd::NoNetwork;

    pub struct Network;

    impl Network {
        pub fn bring_up(_: &mut XenStore, _: u16, cfg: &Config, _: u64) -> Self {
            if cfg.ip.is_some() {
                kernel::warn!("ip= ignored: this image was built without networking (cargo feature `net`)");
            }
            Self
        }
        pub fn connector(&self) -> Connector {
            blkback::store::nbd::NoNetwork
        }
        pub fn port(&self) -> Option<EvtchnPort> {
            None
        }
        pub fn poll(&self, _: &[WatchEvent], _: &mut XenStore, _: &mut Gnttab, _: &mut Evtchn, _: u64) {}
        pub fn flush(&self, _: &mut Evtchn, _: u64) {}
        pub fn deadline(&self, _: u64) -> u64 {
            u64::MAX
        }
    }
}

kernel::entry!(run);

fn run(rt: Runtime) -> ! {
    let Runtime { cmdline, domid, mut xenstore, modules } = rt;
    kernel::info!("xen-blkback-rs {}: Rust PVH driver domain", env!("CARGO_PKG_VERSION"));
    // An HVM driver domain started in hvmloader's place has no command line (libxl passes
    // `cmdline=` only with `kernel=`): the toolstack may put its words at `data/cmdline`
    // while the domain is paused (`xl create -p`, `xenstore-write`, `xl unpause`).
    let from_store = if cmdline.is_empty() {
        let key = alloc::format!("/local/domain/{domid}/data/cmdline");
        kernel::hv::XenStore::read(&mut xenstore, &key).ok().flatten().filter(|s| s.len() <= 1024)
    } else {
        None
    };
    if let Some(words) = &from_store {
        kernel::info!("cmdline from xenstore data/cmdline: '{words}'");
    }
    let cfg = Config::parse(from_store.as_deref().unwrap_or(&cmdline));
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
    let net = network::Network::bring_up(&mut xenstore, domid, &cfg, arch::rdtsc());
    // Half the heap for persistent-grant pools, all frontends together (the rest is for
    // passes, xenstore, the network stack): past it, connections get smaller pools or none.
    let (used, free) = mem::heap::usage();
    let mut defaults = cfg.blk;
    defaults.persistent_budget = blkback::budget::persistent_budget_for_heap(used + free);
    let mut svc: Service<Gnttab, FrameAllocator, BootModule, network::Connector> =
        Service::new(domid, defaults, FrameAllocator, modules, net.connector());
    svc.set_debug(cfg.debug);
    if let Some(disks) = local::bring_up() {
        if cfg.iommu_probe {
            local::probe_iommu(&disks);
        }
        svc.set_local_disks(alloc::boxed::Box::new(disks));
    }
    // Connections, devices and passes size themselves to the free heap: a frontend past
    // it is refused or waits, the domain never runs out.
    svc.set_heap_gauge(|| mem::heap::usage().1);
    if let Err(e) = svc.start(&mut xenstore) {
        kernel::error!("cannot watch {}: {e}", svc.base());
    }
    let d = svc.defaults();
    kernel::info!(
        "blkback: serving vbds under {} ({:?} path, persistent grants {} (at most {} kept, all frontends), up to {} indirect segments)",
        svc.base(),
        d.path,
        if d.persistent { "on" } else { "off" },
        d.persistent_budget,
        d.max_indirect_segments
    );
    let (mut g, mut ev) = (Gnttab, evtchn::Evtchn);
    // The swap path's fallback, said once (the runtime probed the op at boot).
    if gnttab::swap_available() {
        kernel::info!("blkback: `:swap` RAM disks exchange frames");
    } else {
        kernel::info!("blkback: `:swap` RAM disks copy instead (no GNTTABOP_swap_frame)");
    }
    let mut ports = Vec::new();
    // Loop iterations and sleeps, published with the other counters.
    let (mut loops, mut polls) = (0u64, 0u64);
    // The longest a turn of the loop waited for xenstored (watch handling, connects,
    // statistics): what a ring can be held up by besides other rings' work.
    let mut xs_turn_max_ns = 0u64;
    loop {
        loops = loops.wrapping_add(1);
        let xs_waited = xenstore.waited_ns;
        ports.clear();
        ports.push(xenstore.port());
        svc.ports(&mut ports);
        ports.extend(net.port());
        // Clear first, then look: an event that arrives meanwhile re-sets the bit and the
        // next poll returns at once.
        for &p in &ports {
            evtchn::clear(p);
        }
        let now = time::system_time_ns();
        let events_left = svc.handle_xenstore(&mut xenstore, &mut g, &mut ev, now);
        let foreign = svc.take_foreign_events();
        net.poll(&foreign, &mut xenstore, &mut g, &mut ev, now);
        let more = svc.process(&mut xenstore, &mut g, &mut ev, now) | events_left;
        net.flush(&mut ev, now);
        // One clock read per iteration (each one traps to Xen when the TSC is emulated).
        let xs =
            XsCounters { requests: xenstore.requests, rtt_max_ns: xenstore.rtt_max_ns, turn_max_ns: xs_turn_max_ns };
        let more = svc.timers(&mut xenstore, &mut g, &mut ev, now, || domain_counters(loops, polls, xs)) | more;
        xs_turn_max_ns = xs_turn_max_ns.max(xenstore.waited_ns.saturating_sub(xs_waited));
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
            let _ = sched::poll(&ports, svc.next_deadline().min(net.deadline(now)));
        }
    }
}

/// The domain-wide counters under `data/blkback/`: foreign pages mapped now, grant calls,
/// safety-net unmaps, free memory, the loop's iterations and sleeps, hypercalls by kind,
/// xenstore requests and waits.
fn domain_counters(loops: u64, polls: u64, xs: XsCounters) -> Vec<(&'static str, u64)> {
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
        ("console_dropped", console::dropped_lines()),
        ("hc_sched", hypercall::count(SCHED_OP)),
        ("hc_evtchn", hypercall::count(EVENT_CHANNEL_OP)),
        ("hc_gnttab", hypercall::count(GRANT_TABLE_OP)),
        ("probe_hypercall_ns", time::world_switch().0),
        ("probe_rdtsc_ns", time::world_switch().1),
        ("probe_copy4k_ns", time::copy_probe().0),
        ("probe_copy4k_loop_ns", time::copy_probe().1),
        ("xs_requests", xs.requests),
        ("xs_rtt_max_us", xs.rtt_max_ns / 1000),
        ("xs_turn_max_us", xs.turn_max_ns / 1000),
    ]
}

/// The xenstore client's counters, as published.
#[derive(Clone, Copy)]
struct XsCounters {
    requests: u64,
    rtt_max_ns: u64,
    turn_max_ns: u64,
}

#[cfg(not(target_os = "none"))]
fn main() {
    // The image is a PVH guest; on the host this crate builds so clippy and tests cover it.
    eprintln!("the driver domain is a PVH guest image: build it with `cargo xtask build`");
}
