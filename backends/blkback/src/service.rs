//! The blkback service of a driver domain: every vbd the toolstack puts under our
//! `backend/vbd/<frontend-id>/<devid>` becomes a [`Device`] with the store its `target=`
//! names; watch events drive the devices' state machines, `process` their rings.
//!
//! Like Linux's `xen-blkback/xenbus.c` (and Mini-OS `tpmback.c`), the backend owns its
//! discovery: one watch on `backend/vbd`, a rescan when a device directory appears or goes,
//! and per device the watches `Device::watches` names. The runtime offers xenstore, grants,
//! event channels, frames and a clock; it knows nothing about vbds.
//!
//! Sans-I/O: the caller owns the loop, the clock (`now` in ns) and the sleeping; the service
//! says which ports to sleep on and until when (`ports`, `next_deadline`).
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::device::{self, Backing, Device, DeviceConfig};
use crate::engine::DataPath;
use crate::hv::{DomId, EventChannel, EvtchnPort, Frames, Grants, Page, Region, StoreErr, XenStore};
use crate::store::nbd::{Connector, NbdStore, Transport};
use crate::store::{
    BlockStore, Completion, DiskInfo, FrameDisk, NullStore, RamStore, RegionDisk, StoreError, StoreIo, SCRATCH_PAGES,
};
use crate::target::{self, Target, TargetKind};
use crate::text::quote;

/// How often the counters are published.
pub const STATS_PERIOD_NS: u64 = 1_000_000_000;
/// How long after writing Closed our directory is removed (libxl reads Closed first).
pub const REMOVE_GRACE_NS: u64 = 200_000_000;
/// Memory a RAM disk must leave free (rings, mappings' page tables, the heap's neighbours).
pub const RAM_RESERVE: u64 = 2 << 20;
/// Watch events one turn of the loop handles at most (the rest wait for the next turn).
pub const MAX_EVENTS_PER_TURN: usize = 64;
/// How long a connection whose frontend wrote Closed must have been idle before it is
/// dropped (`xenbus::Snapshot::idle`): Linux blkfront dispatches what it still had queued
/// within milliseconds of our last responses.
pub const LINGER_IDLE_NS: u64 = 300_000_000;
/// The longest a closed frontend is served (one that never goes idle, a hostile one, is
/// dropped after this and its remaining requests answered with errors).
pub const LINGER_MAX_NS: u64 = 5_000_000_000;
/// Heap kept free for everything but the rings' passes (xenstore replies of up to 4 KiB,
/// log lines, the network stack's buffers, a device's directory strings): passes and
/// connections use the free heap above it.
pub const HEAP_RESERVE: usize = 256 << 10;
/// The heap passes and connections may use: the gauge's free heap less `HEAP_RESERVE`.
fn room(gauge: fn() -> usize) -> usize {
    gauge().saturating_sub(HEAP_RESERVE)
}

/// Counters written per turn of the loop at most (each one a xenstore round trip).
pub const STATS_WRITES_PER_TURN: usize = 4;
/// Heap a device needs besides its RAM disk's frame list (its state machine, paths,
/// watches, counters), rounded up.
pub const DEVICE_HEAP: usize = 8 << 10;
/// How soon a frontend left waiting for heap (`heap_waits`) is looked at again when no
/// event comes first.
pub const HEAP_RETRY_NS: u64 = 1_000_000;
/// The watch token of the vbd directory (device watches use their backend path).
const VBD_TOKEN: &str = "vbd";

/// Defaults from the driver domain's command line, overridable per disk by `target=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub path: DataPath,
    pub persistent: bool,
    pub max_indirect_segments: u16,
    /// How long I/O of an NBD disk waits for a lost server before it fails.
    pub nbd_window_ns: u64,
    /// Persistent-grant entries all connections together may keep (each pool entry is heap
    /// and a mapped page): a connection gets what is left, half of it at most, trimmed to
    /// what its frontend can keep granted; the driver domain sizes it from its heap.
    pub persistent_budget: usize,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            path: DataPath::Map,
            persistent: true,
            max_indirect_segments: 256,
            nbd_window_ns: 60_000_000_000,
            persistent_budget: 16 * crate::persistent::DEFAULT_CAP,
        }
    }
}

/// The stores a `target=` can name, as one type.
#[derive(Debug)]
pub enum AnyStore<F, R, T, B> {
    Ram(RamStore<FrameDisk<F>, B>),
    /// A boot module and its index (it goes back to the pool when the device goes).
    Module(RamStore<RegionDisk<R>, B>, usize),
    Null(NullStore<B>),
    /// Boxed: its buffers and client state are large next to the others.
    Nbd(Box<NbdStore<T, B>>),
}

/// Calls `$e` on whichever store `$s` is.
macro_rules! each {
    ($s:expr, $x:ident => $e:expr) => {
        match $s {
            AnyStore::Ram($x) => $e,
            AnyStore::Module($x, _) => $e,
            AnyStore::Null($x) => $e,
            AnyStore::Nbd($x) => $e,
        }
    };
}

impl<F: crate::hv::Frame, R: Region, T: Transport, B: Page> BlockStore<B> for AnyStore<F, R, T, B> {
    fn info(&self) -> DiskInfo {
        each!(self, s => s.info())
    }
    fn submit(&mut self, io: StoreIo<B>) -> Result<(), (StoreIo<B>, StoreError)> {
        each!(self, s => s.submit(io))
    }
    fn complete(&mut self, out: &mut Vec<Completion<B>>) {
        each!(self, s => s.complete(out))
    }
    fn frames(&self, off: u64, len: u32, out: &mut Vec<(u64, u16, u16)>) -> bool {
        each!(self, s => s.frames(off, len, out))
    }
    fn scratch(&mut self) -> Option<&mut crate::store::ScratchPool> {
        each!(self, s => s.scratch())
    }
    fn poll(&mut self) {
        each!(self, s => s.poll())
    }
    fn ready(&self) -> bool {
        each!(self, s => s.ready())
    }
    fn has_work(&self) -> bool {
        each!(self, s => s.has_work())
    }
    fn failed(&self) -> Option<&str> {
        each!(self, s => s.failed())
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        each!(self, s => s.counters())
    }
    fn cancel(&mut self, out: &mut Vec<StoreIo<B>>) {
        each!(self, s => s.cancel(out))
    }
}

type Store<G, F, R, C> = AnyStore<<F as Frames>::Frame, R, <C as Connector>::T, Rc<<G as Grants>::Mapping>>;
type Dev<G, F, R, C> = Device<<G as Grants>::Mapping, Store<G, F, R, C>>;

#[derive(Debug)]
struct Entry<D> {
    dev: Box<D>,
    /// When the directory goes (after the grace that follows Closed on detach).
    remove_at: Option<u64>,
    /// Whether the store was seen ready (a network store becomes ready later: the device is
    /// updated once then, to connect a frontend that is already waiting).
    ready_seen: bool,
    /// When its connection last took or answered a request.
    last_io: u64,
    /// Since when a closed frontend is being served (it was notified then).
    linger_since: Option<u64>,
}

impl<D> Entry<D> {
    /// When serving a closed frontend ends: once it has been idle `LINGER_IDLE_NS`, or
    /// `LINGER_MAX_NS` after it was notified, whichever comes first.
    fn linger_end(&self) -> Option<u64> {
        let since = self.linger_since?;
        Some(self.last_io.saturating_add(LINGER_IDLE_NS).min(since.saturating_add(LINGER_MAX_NS)))
    }
}

/// A log line the service wants shown (the caller decides where lines go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Only shown with the `debug` switch: every watch event handled.
    Debug(String),
    Info(String),
    Warn(String),
    Error(String),
}

/// The service over the hypervisor `G` (grants), frames `F` and boot modules `R`.
pub struct Service<G: Grants, F: Frames, R: Region, C: Connector> {
    base: String,
    data: String,
    defaults: Defaults,
    devices: BTreeMap<String, Entry<Dev<G, F, R, C>>>,
    frames: F,
    /// Opens connections to NBD servers.
    net: C,
    /// Boot modules; `None` while a device serves it.
    modules: Vec<Option<R>>,
    last_stats_ns: u64,
    /// Log lines since the caller last took them.
    notes: Vec<Note>,
    /// Watch events with tokens that are not ours (the caller's own watches).
    foreign: Vec<crate::hv::WatchEvent>,
    debug: bool,
    /// Free heap now (the driver domain's allocator); without one, unbounded (host).
    heap_free: fn() -> usize,
    /// A frontend waits for heap: look again at this time.
    heap_retry: Option<u64>,
    /// Counters waiting to be written, and what each path last got.
    stats_queue: VecDeque<(String, String)>,
    stats_last: BTreeMap<String, String>,
}

impl<G: Grants, F: Frames, R: Region, C: Connector> core::fmt::Debug for Service<G, F, R, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Service({}, {} devices)", self.base, self.devices.len())
    }
}

impl<G: Grants, F: Frames, R: Region, C: Connector> Service<G, F, R, C> {
    /// The service of driver domain `domid`, with its memory for RAM disks and its boot
    /// modules.
    pub fn new(domid: DomId, defaults: Defaults, frames: F, modules: Vec<R>, net: C) -> Self {
        Self {
            base: format!("/local/domain/{domid}/backend/vbd"),
            data: format!("/local/domain/{domid}/data/blkback"),
            defaults,
            devices: BTreeMap::new(),
            frames,
            net,
            modules: modules.into_iter().map(Some).collect(),
            last_stats_ns: 0,
            notes: Vec::new(),
            foreign: Vec::new(),
            debug: false,
            heap_free: || usize::MAX,
            heap_retry: None,
            stats_queue: VecDeque::new(),
            stats_last: BTreeMap::new(),
        }
    }

    /// How to read the free heap (the driver domain's allocator). Connections and passes
    /// use what is above `HEAP_RESERVE`: a frontend is refused or throttled, never the
    /// domain aborted.
    pub fn set_heap_gauge(&mut self, free: fn() -> usize) {
        self.heap_free = free;
    }

    fn heap_room(&self) -> usize {
        room(self.heap_free)
    }

    /// Heap for something new (a device, a connection): the room less what the kept pools
    /// may still grow by and one request of the largest kind, so every connection already
    /// made can always take a request (a newcomer is refused before it could starve them).
    fn spare_heap(&self) -> usize {
        let unfilled: usize = self
            .devices
            .values()
            .filter_map(|e| e.dev.connection())
            .map(|c| c.persistent_cap().saturating_sub(c.persistent_len()))
            .sum();
        self.heap_room()
            .saturating_sub(unfilled.saturating_mul(crate::persistent::ENTRY_BYTES))
            .saturating_sub(crate::engine::pass_heap_bytes(1, usize::from(self.defaults.max_indirect_segments)))
    }

    /// Starts watching `backend/vbd` and says we are ready (`data/blkback/ready`).
    pub fn start<X: XenStore>(&mut self, xs: &mut X) -> Result<(), StoreErr> {
        xs.watch(&self.base, VBD_TOKEN)?;
        xs.write(&format!("{}/ready", self.data), "1")
    }

    /// The connector of network stores (to inspect in tests).
    pub fn connector(&self) -> &C {
        &self.net
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn defaults(&self) -> Defaults {
        self.defaults
    }

    /// The devices by backend path.
    pub fn devices(&self) -> impl Iterator<Item = (&str, &Dev<G, F, R, C>)> {
        self.devices.iter().map(|(k, e)| (k.as_str(), &*e.dev))
    }

    pub fn device(&self, be: &str) -> Option<&Dev<G, F, R, C>> {
        self.devices.get(be).map(|e| &*e.dev)
    }

    /// Boot modules not served right now.
    pub fn free_modules(&self) -> usize {
        self.modules.iter().filter(|m| m.is_some()).count()
    }

    /// Watch events for watches the caller set itself (not the service's tokens).
    pub fn take_foreign_events(&mut self) -> Vec<crate::hv::WatchEvent> {
        core::mem::take(&mut self.foreign)
    }

    /// Log lines since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        core::mem::take(&mut self.notes)
    }

    fn info(&mut self, s: String) {
        self.notes.push(Note::Info(s));
    }
    fn warn(&mut self, s: String) {
        self.notes.push(Note::Warn(s));
    }
    fn error(&mut self, s: String) {
        self.notes.push(Note::Error(s));
    }

    /// Every event channel port of every connection, appended to `out` (to sleep on).
    pub fn ports(&self, out: &mut Vec<EvtchnPort>) {
        for e in self.devices.values() {
            out.extend(e.dev.ports());
        }
    }

    /// The earliest time a timer (a directory removal, the statistics) is due.
    pub fn next_deadline(&self) -> u64 {
        let removal = self
            .devices
            .values()
            .filter_map(|e| e.remove_at.into_iter().chain(e.linger_end()).min())
            .min()
            .unwrap_or(u64::MAX);
        // Counters left to write: no sleep.
        let stats = if self.stats_queue.is_empty() { self.last_stats_ns.saturating_add(STATS_PERIOD_NS) } else { 0 };
        removal.min(stats).min(self.heap_retry.unwrap_or(u64::MAX))
    }

    /// Handles queued watch events, `MAX_EVENTS_PER_TURN` at most: a vbd appearing or
    /// vanishing rescans (once per turn); a device's events re-run its state machine once
    /// per turn however many arrived (it is level-triggered: it re-reads what it needs).
    /// Returns whether events may be left (turn again before sleeping): a frontend writing
    /// its keys in a loop gets one update per turn, and every ring still gets its turn.
    pub fn handle_xenstore<X: XenStore, E: EventChannel>(
        &mut self,
        xs: &mut X,
        g: &mut G,
        ev: &mut E,
        now: u64,
    ) -> bool {
        let mut rescan = false;
        let mut dirty: Vec<String> = Vec::new();
        let mut more = false;
        for n in 0..=MAX_EVENTS_PER_TURN {
            if n == MAX_EVENTS_PER_TURN {
                more = true;
                break;
            }
            let event = match xs.next_event() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => {
                    self.error(format!("xenstore: {e}"));
                    break;
                }
            };
            if self.debug {
                self.notes.push(Note::Debug(format!("watch {} ({})", quote(&event.path), quote(&event.token))));
            }
            if event.token == VBD_TOKEN {
                // Only the shape of the tree matters here (a vbd appearing or going), not
                // the keys below a device: those reach the device's own watch.
                let depth = event.path.strip_prefix(&self.base).map(|r| r.split('/').filter(|s| !s.is_empty()).count());
                rescan |= matches!(depth, Some(0..=2));
            } else if let Some(e) = self.devices.get(&event.token) {
                if e.dev.relevant(&event.path) && !dirty.contains(&event.token) {
                    dirty.push(event.token);
                }
            } else {
                self.foreign.push(event);
            }
        }
        if rescan {
            self.rescan(xs, g, ev, now);
        }
        for be in dirty {
            self.update(xs, g, ev, &be, now);
        }
        more
    }

    /// Debug-level notes of every watch event handled (off by default: formatting one per
    /// event costs an allocation on the loop's hot path).
    pub fn set_debug(&mut self, on: bool) {
        self.debug = on;
    }

    fn rescan<X: XenStore, E: EventChannel>(&mut self, xs: &mut X, g: &mut G, ev: &mut E, now: u64) {
        let mut seen: Vec<String> = Vec::new();
        for fe in xs.directory(&self.base).unwrap_or_default() {
            for dev in xs.directory(&format!("{}/{fe}", self.base)).unwrap_or_default() {
                seen.push(format!("{}/{fe}/{dev}", self.base));
            }
        }
        for be in &seen {
            if !self.devices.contains_key(be) {
                self.add(xs, g, ev, be.clone(), now);
            }
        }
        let gone: Vec<String> = self.devices.keys().filter(|k| !seen.contains(k)).cloned().collect();
        for be in gone {
            if let Some(mut e) = self.devices.remove(&be) {
                self.forget_stats(&e.dev.stats_dir());
                if e.dev.connection().is_some() {
                    self.warn(format!("{be}: directory removed while connected: disconnecting"));
                }
                e.dev.force_disconnect(g, ev);
                for p in e.dev.watches() {
                    let _ = xs.unwatch(&p, &be);
                }
                e.dev.remove_own_nodes(xs);
                self.retire(*e.dev);
            }
            self.info(format!("{be}: gone"));
        }
    }

    /// A device is gone: what its counters were is forgotten (a device attached at the same
    /// path later starts afresh), and what was queued for it is not written.
    fn forget_stats(&mut self, dir: &str) {
        let mine = |k: &str| k.strip_prefix(dir).is_some_and(|r| r.starts_with('/'));
        self.stats_last.retain(|k, _| !mine(k));
        self.stats_queue.retain(|(k, _)| !mine(k));
    }

    /// A device is gone: its boot module can be served again (its contents stay).
    fn retire(&mut self, dev: Dev<G, F, R, C>) {
        if let Some(AnyStore::Module(s, n)) = dev.into_store() {
            if let Some(slot) = self.modules.get_mut(n) {
                *slot = Some(s.into_backing().into_region());
            }
        }
    }

    /// The store `t` names, or why it cannot be had.
    fn make_store(&mut self, t: &Target, read_only: bool) -> Result<Store<G, F, R, C>, String> {
        match &t.kind {
            &TargetKind::Ram(bytes) => {
                let free = self.frames.free_bytes();
                if bytes.saturating_add(RAM_RESERVE) > free {
                    return Err(format!(
                        "not enough memory for a {} MiB RAM disk ({} MiB free)",
                        bytes >> 20,
                        free >> 20
                    ));
                }
                let n = usize::try_from(bytes.div_ceil(4096)).map_err(|_| String::from("RAM disk too large"))?;
                let list = n.saturating_mul(core::mem::size_of::<F::Frame>());
                if list > self.spare_heap() {
                    return Err(format!("no heap for the RAM disk's frame list ({list} bytes)"));
                }
                let mut frames = Vec::new();
                frames.try_reserve_exact(n).map_err(|_| String::from("no heap for the RAM disk's frame list"))?;
                for _ in 0..n {
                    frames.push(self.frames.alloc().ok_or("out of frames for the RAM disk")?);
                }
                if t.path == Some(DataPath::Swap) {
                    // The swap path's scratch frames and the zero frame they are reset from.
                    let zero = self.frames.alloc().ok_or("out of frames for the swap scratch pool")?;
                    let mut scratch = Vec::new();
                    scratch
                        .try_reserve_exact(SCRATCH_PAGES)
                        .map_err(|_| String::from("no heap for the scratch pool"))?;
                    for _ in 0..SCRATCH_PAGES {
                        scratch.push(self.frames.alloc().ok_or("out of frames for the swap scratch pool")?);
                    }
                    return Ok(AnyStore::Ram(RamStore::new(FrameDisk::with_scratch(frames, zero, scratch), read_only)));
                }
                Ok(AnyStore::Ram(RamStore::new(FrameDisk::new(frames), read_only)))
            }
            &TargetKind::Null(bytes) => Ok(AnyStore::Null(NullStore::new(bytes / 512))),
            TargetKind::Nbd(uri) => {
                let t = self.net.connect(uri)?;
                Ok(AnyStore::Nbd(Box::new(NbdStore::new(t, &uri.export, self.defaults.nbd_window_ns))))
            }
            &TargetKind::Module(n) => {
                let slot = self
                    .modules
                    .get_mut(n)
                    .ok_or_else(|| format!("no boot module {n} (give the driver domain ramdisk=...)"))?;
                let region = slot.take().ok_or_else(|| format!("boot module {n} is already served"))?;
                Ok(AnyStore::Module(RamStore::new(RegionDisk::new(region), read_only), n))
            }
        }
    }

    fn add<X: XenStore, E: EventChannel>(&mut self, xs: &mut X, g: &mut G, ev: &mut E, be: String, now: u64) {
        // A device costs heap (its state, its RAM disk's frame list) that the frontends
        // already connected may need: without spare heap the toolstack is told no (where
        // libxl looks) and nothing is kept; the next rescan tries again.
        if self.spare_heap() < DEVICE_HEAP {
            let why = String::from("no heap left for another device");
            // Said once per device, not at every rescan.
            if xs.read(&format!("{be}/hotplug-error")).ok().flatten().as_deref() == Some(why.as_str()) {
                return;
            }
            let pairs =
                [(format!("{be}/hotplug-error"), why.clone()), (format!("{be}/hotplug-status"), "error".into())];
            let _ = xs.write_all(&pairs);
            self.error(format!("{be}: {why}"));
            return;
        }
        let mut cfg = DeviceConfig::default();
        cfg.adv.max_indirect_segments = self.defaults.max_indirect_segments;
        // The toolstack's keys first: a device that cannot be served takes no store (no RAM
        // disk allocated, no boot module lent).
        let params = xs.read(&format!("{be}/params")).ok().flatten().unwrap_or_default();
        let built = device::toolstack_keys(xs, &be).and_then(|(_, _, read_only)| {
            let t = target::parse(&params).map_err(|e| format!("target `{params}`: {e}"))?;
            let store = self.make_store(&t, read_only).map_err(|e| format!("target `{params}`: {e}"))?;
            Ok((t, store))
        });
        let dev = match built {
            Ok((t, store)) => {
                cfg.path = t.path.unwrap_or(self.defaults.path);
                cfg.adv.persistent = t.persistent.unwrap_or(self.defaults.persistent);
                cfg.pool_max = t.pool;
                if matches!(t.kind, TargetKind::Null(_) | TargetKind::Nbd(_)) && cfg.path == DataPath::Copy {
                    // No frames of ours to copy to: serve it on the map path.
                    cfg.path = DataPath::Map;
                }
                if !matches!(t.kind, TargetKind::Ram(_)) && cfg.path == DataPath::Swap {
                    // Only a RAM disk has scratch frames: the others copy instead.
                    cfg.path = if matches!(t.kind, TargetKind::Module(_)) { DataPath::Copy } else { DataPath::Map };
                }
                let dev = Device::new(xs, &be, Backing::Store(store), cfg);
                self.info(format!(
                    "{be}: {} ({}), frontend {}, {:?} path",
                    t.kind,
                    if dev.read_only() { "read-only" } else { "read-write" },
                    dev.fe_dom,
                    cfg.path
                ));
                dev
            }
            Err(e) => {
                self.error(format!("{be}: {e}"));
                Device::new(xs, &be, Backing::Refused(e), cfg)
            }
        };
        if let Err(e) = dev.watch(xs, &be) {
            self.error(format!("{be}: watch: {e}"));
        }
        let ready_seen = dev.store().is_none_or(BlockStore::ready);
        self.devices.insert(
            be.clone(),
            Entry { dev: Box::new(dev), remove_at: None, ready_seen, last_io: 0, linger_since: None },
        );
        self.update(xs, g, ev, &be, now);
    }

    fn update<X: XenStore, E: EventChannel>(&mut self, xs: &mut X, g: &mut G, ev: &mut E, be: &str, now: u64) {
        // What a connection made now may keep: the domain's budget less the other
        // connections' reservations (a frontend cannot grow the heap past it by connecting).
        let reserved: usize =
            self.devices.iter().filter(|(k, _)| k.as_str() != be).map(|(_, e)| e.dev.persistent_reserved()).sum();
        // What is left of the budget, half of it at most for one frontend (the connection
        // trims it to what the frontend can keep granted).
        let budget = self.defaults.persistent_budget;
        let share = budget.saturating_sub(reserved).min(budget / 2);
        let room = self.spare_heap();
        let Some(e) = self.devices.get_mut(be) else { return };
        if e.dev.connection().is_none() {
            e.dev.set_persistent_cap(share);
        }
        e.dev.set_heap_room(room);
        let idle = e.linger_end().is_none_or(|end| now >= end);
        e.dev.set_idle(idle);
        let before = e.dev.state();
        let r = e.dev.update(xs, g, ev);
        let after = e.dev.state();
        // Serving a closed frontend ends with its connection, or once it was idle anyway
        // (the state machine had its say then).
        if idle || e.dev.connection().is_none() {
            e.linger_since = None;
        }
        let why = e.dev.last_error.clone().or_else(|| e.dev.refused().or(e.dev.store_failure()).map(String::from));
        let store_failed = e.dev.connection().is_none() && e.dev.store_failure().is_some();
        if let Ok(o) = &r {
            if o.kicked {
                // The closed frontend was notified: what it had queued comes now.
                e.last_io = now;
                e.linger_since = Some(now);
            }
            if o.remove_dir && e.remove_at.is_none() {
                e.remove_at = Some(now.saturating_add(REMOVE_GRACE_NS));
            }
        }
        if let Err(err) = r {
            self.error(format!("{be}: {err}"));
        }
        if after != before {
            let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
            if store_failed {
                self.error(format!("{be}: {before:?} -> {after:?}{why}"));
            } else {
                self.info(format!("{be}: {before:?} -> {after:?}{why}"));
            }
        }
    }

    /// Runs every connected device's rings once. Returns whether requests are waiting
    /// (call again before sleeping).
    pub fn process<X: XenStore, E: EventChannel>(&mut self, xs: &mut X, g: &mut G, ev: &mut E, now: u64) -> bool {
        // Network stores move their handshakes and replies here, connected or not.
        for e in self.devices.values_mut() {
            if let Some(s) = e.dev.store_mut() {
                s.poll();
            }
        }
        // Stores that became ready since the last look: their devices may connect now.
        let ready: Vec<String> = self
            .devices
            .iter_mut()
            .filter(|(_, e)| !e.ready_seen && e.dev.store().is_some_and(|s| s.ready() || s.failed().is_some()))
            .map(|(be, e)| {
                e.ready_seen = true;
                be.clone()
            })
            .collect();
        for be in ready {
            self.update(xs, g, ev, &be, now);
        }
        let mut more = false;
        let mut notes = Vec::new();
        let mut heap_wait = false;
        let gauge = self.heap_free;
        for (be, e) in self.devices.iter_mut() {
            let before = e.dev.state();
            // Read before each device: what the one before gave back is free again.
            e.dev.set_heap_room(room(gauge));
            let r = e.dev.process(xs, g, ev);
            // A frontend waiting for heap is not spun on: it is looked at again on the
            // next event or after `HEAP_RETRY_NS`.
            heap_wait |= r.heap_wait;
            more |= r.more && !r.heap_wait;
            if r.requests > 0 || r.responses > 0 {
                e.last_io = now;
            }
            if e.dev.state() != before {
                let why = e.dev.last_error.as_deref().unwrap_or("");
                notes.push(Note::Warn(format!("{be}: {before:?} -> {:?} ({why})", e.dev.state())));
            }
        }
        self.notes.append(&mut notes);
        self.heap_retry = heap_wait.then(|| now.saturating_add(HEAP_RETRY_NS));
        more
    }

    /// Timers due at `now`: directories to remove after their grace, and the statistics
    /// every `STATS_PERIOD_NS` (per device, plus the domain-wide `extra` counters under
    /// `data/blkback/`), written a few per turn. Returns whether counters are left to
    /// write (turn again before sleeping).
    pub fn timers<X: XenStore, E: EventChannel>(
        &mut self,
        xs: &mut X,
        g: &mut G,
        ev: &mut E,
        now: u64,
        extra: impl FnOnce() -> Vec<(&'static str, u64)>,
    ) -> bool {
        // Closed frontends served until idle: look again once serving them ends.
        let recheck: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, e)| e.linger_end().is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for be in recheck {
            self.update(xs, g, ev, &be, now);
        }
        let due: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, e)| e.remove_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for be in due {
            let Some(mut e) = self.devices.remove(&be) else { continue };
            self.forget_stats(&e.dev.stats_dir());
            match e.dev.remove(xs, &be) {
                Ok(()) => self.info(format!("{be}: detached, directory removed")),
                Err(err) => self.error(format!("{be}: removing the directory: {err}")),
            }
            self.retire(*e.dev);
        }
        // The counters: every `STATS_PERIOD_NS` the values that changed since they were
        // last written are queued, and each turn writes `STATS_WRITES_PER_TURN` of them at
        // most, each one plain write (no transaction). A publish used to be a transaction
        // per device (about 20 xenstore round trips each, all in one turn): with dom0 busy
        // (an event storm, a loaded frontend) that held every ring for tens of ms, once a
        // second. Now one turn waits for at most 4 round trips, and idle devices cost none.
        if self.stats_queue.is_empty() && now.saturating_sub(self.last_stats_ns) >= STATS_PERIOD_NS {
            self.last_stats_ns = now;
            let domain = extra().into_iter().map(|(k, v)| (format!("{}/{k}", self.data), v.to_string()));
            let all = self.devices.values().flat_map(|e| e.dev.stats_pairs()).chain(domain);
            for (k, v) in all {
                if self.stats_last.get(&k) != Some(&v) && self.stats_queue.try_reserve(1).is_ok() {
                    self.stats_queue.push_back((k, v));
                }
            }
        }
        for _ in 0..STATS_WRITES_PER_TURN {
            let Some((k, v)) = self.stats_queue.pop_front() else { break };
            if xs.write(&k, &v).is_ok() {
                self.stats_last.insert(k, v);
            }
        }
        !self.stats_queue.is_empty()
    }
}
