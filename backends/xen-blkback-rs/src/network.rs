//! The binary's network wiring (feature `net`): the vif `device/vif/0` and its TCP/IP
//! stack, driven from the loop. The logic is in `xen_blkback_rs::netstack`, netfront, smoltcp.
use alloc::format;
use alloc::rc::Rc;
use core::cell::RefCell;

use kernel::evtchn::Evtchn;
use kernel::gnttab::Gnttab;
use kernel::hv::{EvtchnPort, WatchEvent};
use kernel::mem::{FrameAllocator, SharedPage};
use kernel::xenstore::XenStore;
use netfront::vif::{Vif, VifConfig};
use xen_blkback_rs::netstack::{Addressing, NetConnector, NetStack};
use xen_blkback_rs::{Config, Ipv4Config};

/// The watch token of the vif's backend state.
const VIF_TOKEN: &str = "vif";

/// What `nbd://` disks connect through.
pub type Connector = NetConnector<SharedPage>;

/// The domain's network, if it has a vif.
pub struct Network(Option<Rc<RefCell<NetStack<SharedPage>>>>);

impl Network {
    /// The vif and its stack, if the domain has a vif: a static address from `ip=` or the
    /// vif's `ip` key, else DHCPv4.
    pub fn bring_up(xs: &mut XenStore, domid: u16, cfg: &Config, seed: u64) -> Self {
        let fe = format!("/local/domain/{domid}/device/vif/0");
        let vif_cfg = match VifConfig::read(xs, &fe) {
            Ok(c) => c,
            Err(e) => {
                if cfg.ip.is_some() {
                    kernel::warn!("ip= given but no usable vif: {e}");
                }
                return Self(None);
            }
        };
        // `ip=` on the command line, else the vif's `ip` key (xl's `vif = [ "ip=..." ]`, a /24).
        let from_key = || {
            let v = kernel::hv::XenStore::read(xs, &format!("{}/ip", vif_cfg.be)).ok().flatten()?;
            let addr = xen_blkback_rs::parse_ipv4(v.split_whitespace().next()?)?;
            Some(Ipv4Config { addr, prefix: 24, gateway: None })
        };
        let addressing = match cfg.ip.or_else(from_key) {
            Some(ip) => Addressing::Static(ip),
            None => Addressing::Dhcp,
        };
        let how = match addressing {
            Addressing::Static(ip) => format!("{ip}"),
            Addressing::Dhcp => "DHCPv4 (no ip= and no ip key)".into(),
        };
        kernel::info!("network: vif {fe} (backend {}), {how}", vif_cfg.be);
        let vif: Vif<SharedPage> = Vif::new(vif_cfg);
        if let Err(e) = kernel::hv::XenStore::watch(xs, &vif.watch_path(), VIF_TOKEN) {
            kernel::error!("cannot watch the vif's backend: {e}");
        }
        Self(Some(Rc::new(RefCell::new(NetStack::new(vif, addressing, seed)))))
    }

    pub fn connector(&self) -> Connector {
        NetConnector { net: self.0.clone() }
    }

    /// The vif's event channel, for the loop's port set.
    pub fn port(&self) -> Option<EvtchnPort> {
        self.0.as_ref().and_then(|n| n.borrow().vif.port())
    }

    /// After xenstore: follow the vif's backend (its watch events are among the service's
    /// foreign ones), move frames, run TCP and DHCP, report a new address.
    pub fn poll(&self, foreign: &[WatchEvent], xs: &mut XenStore, g: &mut Gnttab, ev: &mut Evtchn, now: u64) {
        let Some(n) = self.0.as_ref() else { return };
        let mut n = n.borrow_mut();
        if foreign.iter().any(|e| e.token == VIF_TOKEN) {
            let before = n.vif.state();
            if let Err(e) = n.vif.update(xs, g, ev, &mut FrameAllocator) {
                kernel::error!("vif: {e}");
            }
            if n.vif.state() != before {
                kernel::info!("vif: {before:?} -> {:?}", n.vif.state());
            }
        }
        n.poll(ev, now);
        if let Some(a) = n.take_address_change() {
            match a {
                Some(ip) => kernel::info!("network: address {ip}"),
                None => kernel::info!("network: address none (the lease ended)"),
            }
        }
    }

    /// After the stores ran: what they queued on their sockets goes out now.
    pub fn flush(&self, ev: &mut Evtchn, now: u64) {
        if let Some(n) = self.0.as_ref() {
            n.borrow_mut().poll(ev, now);
        }
    }

    /// When the stack wants to be polled again (retransmissions, keep-alives, DHCP), in ns.
    pub fn deadline(&self, now: u64) -> u64 {
        self.0.as_ref().and_then(|n| n.borrow_mut().poll_at(now)).unwrap_or(u64::MAX)
    }
}
