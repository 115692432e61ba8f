//! A mock netback (feature `test-utils`) that behaves as Linux xen-netback toward our vif:
//! the toolstack's keys, the probe (features, InitWait), connect on the frontend's
//! Connected (refusing a frontend without `request-rx-copy`), RX into the frontend's posted
//! buffers with each response in its request's slot, TX with Linux's fatal checks (a slot
//! crossing a page, too many slots, a ring index out of range disable the vif), restart and
//! close. It runs as dom0 ([`NETBACK`]) over `xen_hv::fake`.
// Test scaffolding: the arithmetic and casts below are on the tests' own values.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation, clippy::missing_panics_doc)]

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use xen_hv::fake::*;
use xen_hv::*;
use xen_ring::BackRing;
use xen_sys_mini::io::netif::*;

/// dom0, where netback runs.
pub const NETBACK: DomId = 0;

#[derive(Debug)]
struct BackConn {
    tx: BackRing<FakeMapping>,
    rx: BackRing<FakeMapping>,
    port: EvtchnPort,
}

/// The backend of one vif.
#[derive(Debug)]
pub struct MockNetback {
    pub fe: String,
    pub be: String,
    pub fe_dom: DomId,
    conn: Option<BackConn>,
    /// Why netback disabled the vif (its fatal errors), if it did.
    pub disabled: Option<String>,
    /// Whether to offer `feature-rx-copy` at probe.
    pub offer_rx_copy: bool,
    /// RX notifications sent (only those the frontend asked for with `rsp_event`).
    pub rx_notifications: u64,
}

impl MockNetback {
    /// What libxl writes for `vif = [ 'mac=...' ]` of domain `fe_dom`, then netback's probe.
    pub fn attach(xs: &mut FakeXenStore, fe_dom: DomId, devid: u32, mac: &str) -> Self {
        let fe = format!("/local/domain/{fe_dom}/device/vif/{devid}");
        let be = format!("/local/domain/{NETBACK}/backend/vif/{fe_dom}/{devid}");
        for (k, v) in [
            ("frontend", fe.as_str()),
            ("frontend-id", &fe_dom.to_string()),
            ("online", "1"),
            ("mac", mac),
            ("state", "1"),
        ] {
            xs.set(&format!("{be}/{k}"), v);
        }
        for (k, v) in [
            ("backend", be.as_str()),
            ("backend-id", &NETBACK.to_string()),
            ("mac", mac),
            ("handle", &devid.to_string()),
            ("state", "1"),
        ] {
            xs.set(&format!("{fe}/{k}"), v);
        }
        let mut nb = Self { fe, be, fe_dom, conn: None, disabled: None, offer_rx_copy: true, rx_notifications: 0 };
        nb.probe(xs);
        nb
    }

    fn probe(&mut self, xs: &mut FakeXenStore) {
        let rx_copy = if self.offer_rx_copy { "1" } else { "0" };
        for (k, v) in [
            ("feature-sg", "1"),
            ("feature-gso-tcpv4", "1"),
            ("feature-rx-copy", rx_copy),
            ("feature-rx-flip", "0"),
            ("multi-queue-max-queues", "1"),
        ] {
            xs.set(&format!("{}/{k}", self.be), v);
        }
        xs.set(&format!("{}/state", self.be), "2");
    }

    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Netback's `frontend_changed`: connects on Connected, closes on Closing/Closed.
    pub fn update(&mut self, xs: &mut FakeXenStore, g: &mut FakeGrants, ev: &mut FakeEvtchn) {
        let fe_state = xs.get(&format!("{}/state", self.fe)).unwrap_or("").to_string();
        match fe_state.as_str() {
            "4" if self.conn.is_none() && self.disabled.is_none() => {
                if let Err(e) = self.connect(xs, g, ev) {
                    self.disabled = Some(e);
                }
            }
            "5" | "6" if self.conn.is_some() => {
                self.drop_conn(g, ev);
                xs.set(&format!("{}/state", self.be), "6");
            }
            _ => {}
        }
    }

    fn connect(&mut self, xs: &mut FakeXenStore, g: &mut FakeGrants, ev: &mut FakeEvtchn) -> Result<(), String> {
        let key = |xs: &FakeXenStore, k: &str| xs.get(&format!("{}/{k}", self.fe)).map(String::from);
        // `read_xenbus_vif_flags`: rx-copy is mandatory.
        if key(xs, "request-rx-copy").as_deref() != Some("1") {
            return Err("frontend does not request rx-copy".into());
        }
        if key(xs, "feature-rx-notify").as_deref() != Some("1") {
            return Err("frontend without feature-rx-notify".into());
        }
        let num = |k: &str| key(xs, k).and_then(|v| v.parse::<u32>().ok()).ok_or(format!("missing {k}"));
        let (tx_ref, rx_ref, port) = (num("tx-ring-ref")?, num("rx-ring-ref")?, num("event-channel")?);
        let mut maps = g.map_as(
            NETBACK,
            &[
                MapReq { dom: self.fe_dom, gref: tx_ref, readonly: false },
                MapReq { dom: self.fe_dom, gref: rx_ref, readonly: false },
            ],
        );
        let rx = maps.pop().and_then(Result::ok).ok_or("rx ring not mappable")?;
        let tx = maps.pop().and_then(Result::ok).ok_or("tx ring not mappable")?;
        // BACK_RING_ATTACH, as `xenvif_map_frontend_data_rings` does.
        let tx = BackRing::attach(vec![tx], NETIF_TX_ENTRY_SIZE).map_err(|(p, e)| {
            g.unmap_any(p);
            format!("tx ring: {e}")
        });
        let rx = BackRing::attach(vec![rx], NETIF_RX_ENTRY_SIZE).map_err(|(p, e)| {
            g.unmap_any(p);
            format!("rx ring: {e}")
        });
        let (tx, rx) = match (tx, rx) {
            (Ok(tx), Ok(rx)) => (tx, rx),
            (tx, rx) => {
                for r in [tx, rx].into_iter().flatten() {
                    g.unmap_any(r.into_pages());
                }
                return Err("ring attach failed".into());
            }
        };
        let port = match ev.bind(self.fe_dom, port) {
            Ok(p) => p,
            Err(e) => {
                g.unmap_any(tx.into_pages());
                g.unmap_any(rx.into_pages());
                return Err(format!("bind: {e}"));
            }
        };
        self.conn = Some(BackConn { tx, rx, port });
        xs.set(&format!("{}/state", self.be), "4");
        Ok(())
    }

    fn drop_conn(&mut self, g: &mut FakeGrants, ev: &mut FakeEvtchn) {
        if let Some(c) = self.conn.take() {
            ev.close(c.port);
            let mut pages = c.tx.into_pages();
            pages.extend(c.rx.into_pages());
            g.unmap_any(pages);
        }
    }

    /// netback reloaded: the connection goes, the probe runs again (InitWait).
    pub fn restart(&mut self, xs: &mut FakeXenStore, g: &mut FakeGrants, ev: &mut FakeEvtchn) {
        self.drop_conn(g, ev);
        self.disabled = None;
        self.probe(xs);
    }

    /// The toolstack (or netback) closes the device.
    pub fn close(&mut self, xs: &mut FakeXenStore) {
        xs.set(&format!("{}/state", self.be), "5");
    }

    /// Unmaps the rings (netback's disconnect), without changing state.
    pub fn unmap(&mut self, g: &mut FakeGrants, ev: &mut FakeEvtchn) {
        self.drop_conn(g, ev);
    }

    /// Takes the next posted RX request: (id, gref). A `req_prod` out of range
    /// (`RING_REQUEST_PROD_OVERFLOW`) disables the vif, as netback's fatal errors do.
    fn next_rx_request(&mut self) -> Option<(u16, GrantRef)> {
        let c = self.conn.as_mut()?;
        match c.rx.unconsumed() {
            Err(_) => {
                self.disabled = Some("rx req_prod out of range".into());
                return None;
            }
            Ok(0) => return None,
            Ok(_) => {}
        }
        let b: [u8; NETIF_RX_ENTRY_SIZE] = c.rx.take().ok()??;
        Some((u16::from_le_bytes([b[0], b[1]]), u32::from_le_bytes([b[4], b[5], b[6], b[7]])))
    }

    /// Writes an RX response (it lands in its request's slot: netback answers RX in order)
    /// and publishes it.
    fn put_rx_response(&mut self, ev: &mut FakeEvtchn, rsp: [u8; NETIF_RX_ENTRY_SIZE]) {
        let Some(c) = self.conn.as_mut() else { return };
        let _ = c.rx.push_response(&rsp);
        if c.rx.push_responses_and_check_notify().unwrap_or(false) {
            ev.notify(c.port);
            self.rx_notifications += 1;
        }
    }

    /// Delivers one frame into the frontend's next posted buffer (as netback's grant copy
    /// does), its response in the request's slot. `false` if no buffer is posted.
    pub fn to_frontend(&mut self, g: &mut FakeGrants, ev: &mut FakeEvtchn, frame: &[u8]) -> bool {
        let Some((id, gref)) = self.next_rx_request() else { return false };
        let mut m = g.map_as(NETBACK, &[MapReq { dom: self.fe_dom, gref, readonly: false }]);
        let Some(Ok(page)) = m.pop() else {
            self.disabled = Some("rx buffer grant not mappable".into());
            return false;
        };
        let ok = page.write(0, frame).is_ok();
        g.unmap_any(vec![page]);
        let mut rsp = [0u8; NETIF_RX_ENTRY_SIZE];
        rsp[0..2].copy_from_slice(&id.to_le_bytes());
        let status = if ok { i16::try_from(frame.len()).unwrap_or(NETIF_RSP_ERROR) } else { NETIF_RSP_ERROR };
        rsp[6..8].copy_from_slice(&status.to_le_bytes());
        self.put_rx_response(ev, rsp);
        ok
    }

    /// Consumes one posted RX buffer and answers with `rsp` as given (hostile tests): `id`
    /// is the request's unless `id` is `Some`.
    pub fn raw_rx_response(
        &mut self,
        ev: &mut FakeEvtchn,
        id: Option<u16>,
        offset: u16,
        flags: u16,
        status: i16,
    ) -> bool {
        let Some((req_id, _)) = self.next_rx_request() else { return false };
        let mut rsp = [0u8; NETIF_RX_ENTRY_SIZE];
        rsp[0..2].copy_from_slice(&id.unwrap_or(req_id).to_le_bytes());
        rsp[2..4].copy_from_slice(&offset.to_le_bytes());
        rsp[4..6].copy_from_slice(&flags.to_le_bytes());
        rsp[6..8].copy_from_slice(&status.to_le_bytes());
        self.put_rx_response(ev, rsp);
        true
    }

    /// Sets the RX ring's `rsp_prod` as a lying backend would.
    pub fn forge_rx_rsp_prod(&mut self, v: u32) {
        if let Some(c) = self.conn.as_mut() {
            let _ = c.rx.force_rsp_prod(v);
        }
    }

    /// Takes every frame the frontend queued on TX, applying netback's checks
    /// (`xenvif_tx_build_gops`, `xenvif_count_requests`): fatal ones disable the vif.
    pub fn from_frontend(&mut self, g: &mut FakeGrants, ev: &mut FakeEvtchn) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let fe_dom = self.fe_dom;
        let Some(c) = self.conn.as_mut() else { return out };
        let Ok(n) = c.tx.unconsumed() else {
            self.disabled = Some("tx req_prod out of range".into());
            return out;
        };
        for _ in 0..n {
            let Ok(Some(b)) = c.tx.take::<NETIF_TX_ENTRY_SIZE>() else { break };
            let gref = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let offset = usize::from(u16::from_le_bytes([b[4], b[5]]));
            let flags = u16::from_le_bytes([b[6], b[7]]);
            let id = u16::from_le_bytes([b[8], b[9]]);
            let size = usize::from(u16::from_le_bytes([b[10], b[11]]));
            if offset + size > 4096 {
                self.disabled = Some("Cross page boundary".into());
                return out;
            }
            if flags & (NETTXF_MORE_DATA | NETTXF_EXTRA_INFO) != 0 {
                self.disabled = Some("multi-slot packet the frontend did not negotiate".into());
                return out;
            }
            let mut m = g.map_as(NETBACK, &[MapReq { dom: fe_dom, gref, readonly: true }]);
            let status = match m.pop() {
                Some(Ok(page)) => {
                    let mut frame = vec![0u8; size];
                    let _ = page.read(offset, &mut frame);
                    g.unmap_any(vec![page]);
                    out.push(frame);
                    NETIF_RSP_OKAY
                }
                _ => NETIF_RSP_ERROR,
            };
            let mut rsp = [0u8; NETIF_TX_ENTRY_SIZE];
            rsp[0..2].copy_from_slice(&id.to_le_bytes());
            rsp[2..4].copy_from_slice(&status.to_le_bytes());
            let _ = c.tx.push_response(&rsp);
        }
        if c.tx.push_responses_and_check_notify().unwrap_or(false) {
            ev.notify(c.port);
        }
        out
    }
}
