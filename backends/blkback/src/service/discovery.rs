//! Discovery: the vbd directories under `backend/vbd` become devices (with the store their
//! `target=` names, admitted by the budget) and go when their directory does.
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::entry::Entry;
use super::service::{Dev, Service};
use crate::device::{self, Backing, Device, DeviceConfig};
use crate::error::DeviceError;
use crate::hv::{EventChannel, Frames, Grants, Region, XenStore};
use crate::store::any::{self, AnyStore, Resources};
use crate::store::nbd::Connector;
use crate::store::BlockStore;
use crate::target::{self, TargetKind};

impl<G: Grants, F: Frames, R: Region, C: Connector> Service<G, F, R, C> {
    pub(super) fn rescan<X: XenStore, E: EventChannel>(&mut self, xs: &mut X, g: &mut G, ev: &mut E, now: u64) {
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
                self.stats.forget(&e.dev.stats_dir());
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

    /// A device is gone: its boot module can be served again (its contents stay).
    pub(super) fn retire(&mut self, dev: Dev<G, F, R, C>) {
        if let Some(AnyStore::Module(s, n)) = dev.into_store() {
            if let Some(slot) = self.modules.get_mut(n) {
                *slot = Some(s.into_backing().into_region());
            }
        }
    }

    fn add<X: XenStore, E: EventChannel>(&mut self, xs: &mut X, g: &mut G, ev: &mut E, be: String, now: u64) {
        // A device costs heap (its state, its RAM disk's frame list) that the frontends
        // already connected may need: without spare heap the toolstack is told no (where
        // libxl looks) and nothing is kept; the next rescan tries again.
        let unfilled = self.unfilled_pools();
        if let Err(e) = self.budget.admit_device(unfilled) {
            let why = e.to_string();
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
        let spare_heap = self.budget.spare(unfilled);
        let built = device::toolstack_keys(xs, &be).and_then(|(_, _, read_only)| {
            let t = target::parse(&params).map_err(|err| DeviceError::Target { params: params.clone(), err })?;
            let mut res = Resources {
                frames: &mut self.frames,
                modules: &mut self.modules,
                net: &mut self.net,
                local: &mut *self.local,
                spare_heap,
                nbd_window_ns: self.defaults.nbd_window_ns,
            };
            let store =
                any::open(&t, read_only, &mut res).map_err(|err| DeviceError::Store { params: params.clone(), err })?;
            Ok((t, store))
        });
        let dev = match built {
            Ok((t, store)) => {
                cfg.path = t.effective_path(self.defaults.path);
                // A controller DMAs straight into the frontend's pages: persistent grants
                // would only add blkfront's copy into them (not offered unless asked).
                let persistent =
                    if matches!(t.kind, TargetKind::Nvme { .. }) { false } else { self.defaults.persistent };
                cfg.adv.persistent = t.persistent.unwrap_or(persistent);
                cfg.pool_max = t.pool;
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
        self.devices.insert(be.clone(), Entry::new(dev, ready_seen));
        self.update(xs, g, ev, &be, now);
    }
}
