//! The frontend's xenstore keys, parsed against what we advertised. Everything here is
//! written by the frontend and therefore hostile: numbers are strict decimal, counts are
//! range-checked before anything is allocated from them.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::abi::Abi;
use crate::engine::QueueParams;
use crate::hv::XenStore;

/// What we advertised at probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertised {
    /// `max-ring-page-order` (Linux: 4, i.e. 16 pages).
    pub max_ring_page_order: u32,
    /// `multi-queue-max-queues`.
    pub max_queues: u32,
    /// `feature-max-indirect-segments`.
    pub max_indirect_segments: u16,
    /// `feature-persistent`.
    pub persistent: bool,
}

impl Default for Advertised {
    fn default() -> Self {
        Self { max_ring_page_order: 4, max_queues: 4, max_indirect_segments: 256, persistent: true }
    }
}

/// What the frontend asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendConfig {
    pub abi: Abi,
    pub persistent: bool,
    /// `feature-grant-swap` (this project's protocol extension, README): bit 0, READ
    /// segments may be exchanged; bit 1, WRITE segments. Other bits ignored.
    pub grant_swap: u8,
    pub queues: Vec<QueueParams>,
    pub ring_page_order: u32,
}

/// What is wrong with the frontend's keys (the frontend's fault, every one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Missing(String),
    /// Not a strict decimal number, or out of range.
    BadValue(String),
    TooManyQueues(u32),
    RingOrderTooBig(u32),
    /// The frontend's value, quoted and cut (`quote::quote`).
    UnknownProtocol(String),
    Store(String),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Missing(k) => write!(f, "frontend key {k} is missing"),
            ConfigError::BadValue(k) => write!(f, "frontend key {k} is not a number in range"),
            ConfigError::TooManyQueues(n) => write!(f, "frontend asked for {n} queues, outside what we offered"),
            ConfigError::RingOrderTooBig(o) => write!(f, "frontend ring-page-order {o} is above what we offered"),
            ConfigError::UnknownProtocol(p) => write!(f, "unknown frontend protocol {p}"),
            ConfigError::Store(e) => write!(f, "xenstore: {e}"),
        }
    }
}

/// Strict decimal `u32`: digits only (surrounding whitespace tolerated), no sign, no
/// overflow. xenstore values may also carry a trailing NUL from some writers.
pub fn parse_u32(s: &str) -> Option<u32> {
    let t = s.trim().trim_end_matches('\0');
    if t.is_empty() || t.len() > 10 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn read<X: XenStore>(xs: &mut X, path: &str) -> Result<Option<String>, ConfigError> {
    xs.read(path).map_err(|e| ConfigError::Store(format!("{path}: {e}")))
}

fn read_u32<X: XenStore>(xs: &mut X, path: &str) -> Result<Option<u32>, ConfigError> {
    match read(xs, path)? {
        None => Ok(None),
        Some(v) => parse_u32(&v).map(Some).ok_or_else(|| ConfigError::BadValue(String::from(path))),
    }
}

fn need_u32<X: XenStore>(xs: &mut X, path: &str) -> Result<u32, ConfigError> {
    read_u32(xs, path)?.ok_or_else(|| ConfigError::Missing(String::from(path)))
}

/// `ring-ref` or `ring-page-order` + `ring-ref%u`, and `event-channel`, under `dir`.
fn read_queue<X: XenStore>(xs: &mut X, dir: &str, order: u32) -> Result<QueueParams, ConfigError> {
    let mut ring_refs = Vec::new();
    if order == 0 {
        // Linux blkfront writes `ring-ref` for a single page; accept `ring-ref0` too.
        let r = match read_u32(xs, &format!("{dir}/ring-ref"))? {
            Some(r) => r,
            None => need_u32(xs, &format!("{dir}/ring-ref0"))?,
        };
        ring_refs.push(r);
    } else {
        for i in 0..(1u32 << order) {
            ring_refs.push(need_u32(xs, &format!("{dir}/ring-ref{i}"))?);
        }
    }
    let evtchn = need_u32(xs, &format!("{dir}/event-channel"))?;
    Ok(QueueParams { ring_refs, evtchn })
}

/// Reads the frontend directory `fe` (`/local/domain/<fe>/device/vbd/<dev>`).
pub fn read_frontend<X: XenStore>(xs: &mut X, fe: &str, adv: &Advertised) -> Result<FrontendConfig, ConfigError> {
    let order = read_u32(xs, &format!("{fe}/ring-page-order"))?.unwrap_or(0);
    if order > adv.max_ring_page_order {
        return Err(ConfigError::RingOrderTooBig(order));
    }
    let nq = read_u32(xs, &format!("{fe}/multi-queue-num-queues"))?.unwrap_or(1);
    if nq == 0 || nq > adv.max_queues {
        return Err(ConfigError::TooManyQueues(nq));
    }
    let protocol = read(xs, &format!("{fe}/protocol"))?;
    let abi = Abi::from_protocol(protocol.as_deref())
        .map_err(|_| ConfigError::UnknownProtocol(crate::quote::quote(&protocol.unwrap_or_default())))?;
    let persistent = adv.persistent && read_u32(xs, &format!("{fe}/feature-persistent"))?.unwrap_or(0) == 1;
    let grant_swap = (read_u32(xs, &format!("{fe}/feature-grant-swap"))?.unwrap_or(0) & 3) as u8;
    let mut queues = Vec::new();
    if nq == 1 {
        queues.push(read_queue(xs, fe, order)?);
    } else {
        for q in 0..nq {
            queues.push(read_queue(xs, &format!("{fe}/queue-{q}"), order)?);
        }
    }
    Ok(FrontendConfig { abi, persistent, grant_swap, queues, ring_page_order: order })
}

#[cfg(test)]
mod tests {
    use super::parse_u32;

    #[test]
    fn strict_numbers() {
        assert_eq!(parse_u32("8"), Some(8));
        assert_eq!(parse_u32(" 4294967295\n"), Some(u32::MAX));
        assert_eq!(parse_u32("17\0"), Some(17));
        for bad in ["", "-1", "+1", "0x10", "1e3", "4294967296", "12 34", "99999999999"] {
            assert_eq!(parse_u32(bad), None, "{bad:?}");
        }
    }
}
