//! The driver domain's service: every vbd the toolstack puts under our
//! `backend/vbd/<frontend-id>/<devid>` becomes a `blkback::device::Device` with the store its
//! `target=` names; watch events drive the devices' state machines, event channels their
//! rings. Idle means asleep in `SCHEDOP_poll` on every ring's port and xenstore's.
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use blkback::device::{Device, DeviceConfig};
use blkback::engine::DataPath;
use blkback::hv::XenStore as HvXs;
use blkback::store::{BlockStore, Completion, DiskInfo, NullStore, RamStore, StoreError, StoreIo};
use xen_sys_mini::io::xenbus::XenbusState;
use xen_sys_mini::DomId;

use crate::blk::{self, FrameDisk, ModuleDisk, Target, TargetKind};
use crate::gnttab::{self, ForeignMap};
use crate::xenstore::XenStore;
use crate::{evtchn, sched, time};

type Buf = Rc<ForeignMap>;

/// The stores a `target=` can name, as one type.
#[derive(Debug)]
pub enum AnyStore {
    Ram(RamStore<FrameDisk, Buf>),
    Module(RamStore<ModuleDisk, Buf>),
    Null(NullStore<Buf>),
}

impl BlockStore<Buf> for AnyStore {
    fn info(&self) -> DiskInfo {
        match self {
            AnyStore::Ram(s) => s.info(),
            AnyStore::Module(s) => s.info(),
            AnyStore::Null(s) => s.info(),
        }
    }
    fn submit(&mut self, io: StoreIo<Buf>) -> Result<(), (StoreIo<Buf>, StoreError)> {
        match self {
            AnyStore::Ram(s) => s.submit(io),
            AnyStore::Module(s) => s.submit(io),
            AnyStore::Null(s) => s.submit(io),
        }
    }
    fn complete(&mut self, out: &mut Vec<Completion<Buf>>) {
        match self {
            AnyStore::Ram(s) => s.complete(out),
            AnyStore::Module(s) => s.complete(out),
            AnyStore::Null(s) => s.complete(out),
        }
    }
    fn frames(&self, off: u64, len: u32, out: &mut Vec<(u64, u16, u16)>) -> bool {
        match self {
            AnyStore::Ram(s) => s.frames(off, len, out),
            AnyStore::Module(s) => s.frames(off, len, out),
            AnyStore::Null(s) => s.frames(off, len, out),
        }
    }
}

type Dev = Device<ForeignMap, AnyStore>;

#[derive(Debug)]
enum Entry {
    Serving(alloc::boxed::Box<Dev>, Option<u64>),
    /// The target was refused; kept so rescans do not retry it. The time is when its
    /// directory goes, once the toolstack detached it.
    Failed(Option<u64>),
}

/// Defaults from the driver domain's command line.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub copy: bool,
    pub persistent: bool,
    pub max_indirect_segments: u16,
}

pub struct Service {
    xs: XenStore,
    g: blk::Grants,
    ev: blk::Evtchn,
    domid: DomId,
    base: String,
    devices: BTreeMap<String, Entry>,
    defaults: Defaults,
    modules: Vec<(u64, u64, bool)>,
    /// Which boot module a device serves (released when the device goes).
    module_of: BTreeMap<String, usize>,
    last_stats_ns: u64,
    prof: Profile,
}

/// Where the service's time goes (TSC cycles), published with the other counters.
#[derive(Debug, Default, Clone, Copy)]
struct Profile {
    loops: u64,
    polls: u64,
    cyc_poll: u64,
    cyc_xenstore: u64,
    cyc_process: u64,
    cyc_timers: u64,
}

impl core::fmt::Debug for Service {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Service({} devices)", self.devices.len())
    }
}

const STATS_PERIOD_NS: u64 = 1_000_000_000;
/// How long after writing Closed our directory is removed (libxl reads Closed first).
const REMOVE_GRACE_NS: u64 = 200_000_000;

impl Service {
    pub fn new(xs: XenStore, domid: DomId, defaults: Defaults, modules: Vec<(u64, u64)>) -> Self {
        Self {
            xs,
            g: blk::Grants,
            ev: blk::Evtchn,
            domid,
            base: format!("/local/domain/{domid}/backend/vbd"),
            devices: BTreeMap::new(),
            defaults,
            modules: modules.into_iter().map(|(a, s)| (a, s, false)).collect(),
            module_of: BTreeMap::new(),
            last_stats_ns: 0,
            prof: Profile::default(),
        }
    }

    /// Runs forever.
    pub fn run(&mut self) -> ! {
        if let Err(e) = HvXs::watch(&mut self.xs, &self.base, "vbd") {
            error!("cannot watch {}: {e:?}", self.base);
        }
        let _ = HvXs::write(&mut self.xs, &format!("/local/domain/{}/data/blkback/ready", self.domid), "1");
        info!(
            "blkback: serving vbds under {} (path {}, persistent grants {}, up to {} indirect segments)",
            self.base,
            if self.defaults.copy { "copy" } else { "map" },
            if self.defaults.persistent { "on" } else { "off" },
            self.defaults.max_indirect_segments
        );
        loop {
            let xs_port = self.xs.port();
            let mut ports = alloc::vec![xs_port];
            for e in self.devices.values() {
                if let Entry::Serving(d, _) = e {
                    ports.extend(d.ports());
                }
            }
            // Clear first, then look: an event that arrives meanwhile re-sets the bit and
            // the next poll returns at once.
            for &p in &ports {
                evtchn::clear(p);
            }
            self.prof.loops += 1;
            let t0 = crate::arch::rdtsc();
            self.handle_xenstore();
            let t1 = crate::arch::rdtsc();
            let more = self.process_all();
            let t2 = crate::arch::rdtsc();
            self.timers();
            let t3 = crate::arch::rdtsc();
            self.prof.cyc_xenstore += t1.wrapping_sub(t0);
            self.prof.cyc_process += t2.wrapping_sub(t1);
            self.prof.cyc_timers += t3.wrapping_sub(t2);
            if !more {
                let deadline = time::system_time_ns() + STATS_PERIOD_NS;
                self.prof.polls += 1;
                let _ = sched::poll(&ports, self.next_deadline().min(deadline));
                self.prof.cyc_poll += crate::arch::rdtsc().wrapping_sub(t3);
            }
        }
    }

    fn next_deadline(&self) -> u64 {
        self.devices
            .values()
            .filter_map(|e| match e {
                Entry::Serving(_, Some(t)) | Entry::Failed(Some(t)) => Some(*t),
                _ => None,
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    fn handle_xenstore(&mut self) {
        loop {
            let ev = match self.xs.next_event(0) {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    error!("xenstore: {e}");
                    break;
                }
            };
            if ev.token == "vbd" {
                // Only the shape of the tree matters here (a new or vanished vbd), not our
                // own writes below a device.
                let depth = ev.path.strip_prefix(&self.base).map(|r| r.split('/').filter(|s| !s.is_empty()).count());
                if matches!(depth, Some(0..=2)) {
                    self.rescan();
                }
            } else if ev.path.contains("/statistics/") {
                // Our own counters.
            } else {
                self.update(&ev.token);
            }
        }
    }

    fn rescan(&mut self) {
        let mut seen: Vec<String> = Vec::new();
        for fe in HvXs::directory(&mut self.xs, &self.base).unwrap_or_default() {
            for dev in HvXs::directory(&mut self.xs, &format!("{}/{fe}", self.base)).unwrap_or_default() {
                seen.push(format!("{}/{fe}/{dev}", self.base));
            }
        }
        for be in &seen {
            if !self.devices.contains_key(be) {
                self.add(be.clone());
            }
        }
        let gone: Vec<String> = self.devices.keys().filter(|k| !seen.contains(k)).cloned().collect();
        for be in gone {
            if let Some(Entry::Serving(mut d, _)) = self.devices.remove(&be) {
                if d.connection().is_some() {
                    warn!("{be}: directory removed while connected: disconnecting");
                }
                d.force_disconnect(&mut self.g, &mut self.ev);
                for p in d.watches() {
                    let _ = HvXs::unwatch(&mut self.xs, &p, &be);
                }
                drop(d);
                self.release_module(&be);
            }
            info!("{be}: gone");
        }
    }

    /// The module a removed device served can be served again (its contents stay).
    fn release_module(&mut self, be: &str) {
        if let Some(n) = self.module_of.remove(be) {
            if let Some(m) = self.modules.get_mut(n) {
                m.2 = false;
            }
        }
    }

    fn make_store(&mut self, t: &Target, read_only: bool) -> Result<AnyStore, String> {
        match t.kind {
            TargetKind::Ram(size) => {
                let d = FrameDisk::new(size).ok_or_else(|| {
                    format!(
                        "not enough memory for a {} MiB RAM disk ({} MiB free)",
                        size >> 20,
                        crate::mem::free_bytes() >> 20
                    )
                })?;
                Ok(AnyStore::Ram(RamStore::new(d, read_only)))
            }
            TargetKind::Null(size) => Ok(AnyStore::Null(NullStore::new(size / 512))),
            TargetKind::Module(n) => {
                let m = self
                    .modules
                    .get_mut(n)
                    .ok_or_else(|| format!("no boot module {n} (give the driver domain ramdisk=...)"))?;
                if m.2 {
                    return Err(format!("boot module {n} is already served"));
                }
                m.2 = true;
                // SAFETY: the module Xen loaded, excluded from the allocator by mem::init,
                // handed out once (the flag above).
                let d = unsafe { ModuleDisk::new(m.0, m.1) };
                Ok(AnyStore::Module(RamStore::new(d, read_only)))
            }
        }
    }

    fn add(&mut self, be: String) {
        let params = HvXs::read(&mut self.xs, &format!("{be}/params")).ok().flatten().unwrap_or_default();
        let mode = HvXs::read(&mut self.xs, &format!("{be}/mode")).ok().flatten().unwrap_or_else(|| "w".to_string());
        let read_only = !mode.trim().starts_with('w');
        let built = blk::parse_target(&params).and_then(|t| self.make_store(&t, read_only).map(|s| (t, s)));
        let (target, store) = match built {
            Ok(x) => x,
            Err(e) => {
                error!("{be}: target `{params}`: {e}");
                let _ = HvXs::write(&mut self.xs, &format!("{be}/hotplug-error"), &format!("target `{params}`: {e}"));
                let _ = HvXs::write(&mut self.xs, &format!("{be}/hotplug-status"), "error");
                let _ = HvXs::write(&mut self.xs, &format!("{be}/state"), &format!("{}", XenbusState::Closed as u32));
                // Watch it: when the toolstack gives up (online = 0) the directory goes.
                let _ = HvXs::watch(&mut self.xs, &be, &be);
                self.devices.insert(be, Entry::Failed(None));
                return;
            }
        };
        let mut cfg = DeviceConfig {
            path: if target.copy.unwrap_or(self.defaults.copy) { DataPath::Copy } else { DataPath::Map },
            ..DeviceConfig::default()
        };
        cfg.adv.persistent = target.persistent.unwrap_or(self.defaults.persistent);
        cfg.adv.max_indirect_segments = self.defaults.max_indirect_segments;
        if matches!(target.kind, TargetKind::Null(_)) && cfg.path == DataPath::Copy {
            // A null store has no frames to copy to: serve it on the map path.
            cfg.path = DataPath::Map;
        }
        match Device::new(&mut self.xs, &be, store, cfg) {
            Ok(d) => {
                info!(
                    "{be}: {} ({}), frontend {}, {:?} path",
                    blk::describe(&target),
                    if d.read_only() { "read-only" } else { "read-write" },
                    d.fe_dom,
                    cfg.path
                );
                if let Err(e) = d.watch(&mut self.xs, &be) {
                    error!("{be}: watch: {e}");
                }
                if let TargetKind::Module(n) = target.kind {
                    self.module_of.insert(be.clone(), n);
                }
                self.devices.insert(be.clone(), Entry::Serving(alloc::boxed::Box::new(d), None));
                self.update(&be);
            }
            Err(e) => {
                error!("{be}: {e}");
                if let TargetKind::Module(n) = target.kind {
                    if let Some(m) = self.modules.get_mut(n) {
                        m.2 = false;
                    }
                }
                let _ = HvXs::write(&mut self.xs, &format!("{be}/hotplug-error"), &e);
                let _ = HvXs::watch(&mut self.xs, &be, &be);
                self.devices.insert(be, Entry::Failed(None));
            }
        }
    }

    fn update(&mut self, be: &str) {
        if let Some(Entry::Failed(remove_at)) = self.devices.get(be) {
            let online = HvXs::read(&mut self.xs, &format!("{be}/online")).ok().flatten();
            if remove_at.is_none() && online.as_deref().map(str::trim) == Some("0") {
                // As for a served device: Closed first (libxl waits for it), then the
                // directory, after the grace.
                let _ = HvXs::write(&mut self.xs, &format!("{be}/state"), &format!("{}", XenbusState::Closed as u32));
                let t = time::system_time_ns() + REMOVE_GRACE_NS;
                self.devices.insert(be.to_string(), Entry::Failed(Some(t)));
            }
            return;
        }
        let Some(Entry::Serving(d, remove_at)) = self.devices.get_mut(be) else {
            return;
        };
        let before = d.state();
        match d.update(&mut self.xs, &mut self.g, &mut self.ev) {
            Ok(o) => {
                if o.remove_dir && remove_at.is_none() {
                    *remove_at = Some(time::system_time_ns() + REMOVE_GRACE_NS);
                }
            }
            Err(e) => error!("{be}: {e}"),
        }
        if d.state() != before {
            info!(
                "{be}: {:?} -> {:?}{}",
                before,
                d.state(),
                d.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            );
        }
    }

    fn process_all(&mut self) -> bool {
        let mut more = false;
        for (be, e) in self.devices.iter_mut() {
            if let Entry::Serving(d, _) = e {
                let before = d.state();
                let r = d.process(&mut self.xs, &mut self.g, &mut self.ev);
                more |= r.more;
                if d.state() != before {
                    warn!("{be}: {:?} -> {:?} ({})", before, d.state(), d.last_error.as_deref().unwrap_or(""));
                }
            }
        }
        more
    }

    fn timers(&mut self) {
        let now = time::system_time_ns();
        let due: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Serving(_, Some(t)) | Entry::Failed(Some(t)) if *t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for be in due {
            match self.devices.remove(&be) {
                Some(Entry::Serving(mut d, _)) => {
                    match d.remove(&mut self.xs, &be) {
                        Ok(()) => info!("{be}: detached, directory removed"),
                        Err(e) => error!("{be}: removing the directory: {e}"),
                    }
                    drop(d);
                    self.release_module(&be);
                }
                Some(Entry::Failed(_)) => {
                    let _ = HvXs::unwatch(&mut self.xs, &be, &be);
                    let _ = HvXs::rm(&mut self.xs, &be);
                    info!("{be}: refused device detached, directory removed");
                }
                None => {}
            }
        }
        if now.saturating_sub(self.last_stats_ns) >= STATS_PERIOD_NS {
            self.last_stats_ns = now;
            for e in self.devices.values() {
                if let Entry::Serving(d, _) = e {
                    let _ = d.publish_stats(&mut self.xs);
                }
            }
            let c = gnttab::counters();
            let base = format!("/local/domain/{}/data/blkback", self.domid);
            let pairs = alloc::vec![
                (format!("{base}/mapped"), c.mapped_now.to_string()),
                (format!("{base}/map_calls"), c.map_calls.to_string()),
                (format!("{base}/unmap_calls"), c.unmap_calls.to_string()),
                (format!("{base}/copy_calls"), c.copy_calls.to_string()),
                (format!("{base}/safety_net_unmaps"), c.safety_net_unmaps.to_string()),
                (format!("{base}/free_kib"), (crate::mem::free_bytes() >> 10).to_string()),
                (format!("{base}/loops"), self.prof.loops.to_string()),
                (format!("{base}/polls"), self.prof.polls.to_string()),
                (format!("{base}/mcyc_poll"), (self.prof.cyc_poll >> 20).to_string()),
                (format!("{base}/mcyc_xenstore"), (self.prof.cyc_xenstore >> 20).to_string()),
                (format!("{base}/mcyc_process"), (self.prof.cyc_process >> 20).to_string()),
                (format!("{base}/mcyc_timers"), (self.prof.cyc_timers >> 20).to_string()),
                (format!("{base}/hc_sched"), crate::hypercall::count(xen_sys_mini::hypercall::SCHED_OP).to_string()),
                (
                    format!("{base}/hc_evtchn"),
                    crate::hypercall::count(xen_sys_mini::hypercall::EVENT_CHANNEL_OP).to_string()
                ),
                (
                    format!("{base}/hc_gnttab"),
                    crate::hypercall::count(xen_sys_mini::hypercall::GRANT_TABLE_OP).to_string()
                ),
            ];
            let _ = self.xs.write_all(&pairs);
        }
    }
}
