//! The driver domain's configuration: its command line (`cmdline=` in the xl config),
//! parsed once into types here, host-tested, before anything is served.
//!
//! Words: `path=map|copy` (data path), `persistent=1|0` (offer persistent grants),
//! `indirect=<12..4096>` (segments per indirect request), `debug` (debug-level console
//! lines: every watch event the service handles), `selftest` (run the runtime's self tests
//! against Xen and power off), `crashtest=ud2|panic` (prove the crash paths),
//! `ip=<a.b.c.d>/<prefix>` and `gw=<a.b.c.d>` (the vif's static IPv4 address, for `nbd://` disks; DHCPv4 without),
//! `nbd-timeout=<seconds>` (how long I/O waits for a lost NBD server, 60 by default),
//! `iommu-probe` (after an NVMe controller's bring-up, have it DMA to a bus address nothing
//! maps: the IOMMU must stop it, and the console says how the command ended). A word that
//! is not one of these, or a value out of range, is reported on the console and ignored.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use blkback::engine::DataPath;
use blkback::service::Defaults;

/// IPv4 configuration: `ip=<a.b.c.d>/<prefix>` and optional `gw=<a.b.c.d>`, or a DHCP lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Config {
    pub addr: [u8; 4],
    pub prefix: u8,
    pub gateway: Option<[u8; 4]>,
}

/// `192.0.2.2/24`, with ` via 192.0.2.1` when there is a gateway.
impl core::fmt::Display for Ipv4Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.addr;
        write!(f, "{a}.{b}.{c}.{d}/{}", self.prefix)?;
        match self.gateway {
            Some([a, b, c, d]) => write!(f, " via {a}.{b}.{c}.{d}"),
            None => Ok(()),
        }
    }
}

/// What the domain does after boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve vbds (the product).
    Serve,
    /// Run the runtime's self tests, print `Test result: ...`, power off.
    Selftest,
    /// Raise an invalid-opcode exception (the crash report path).
    CrashUd2,
    /// Panic (the panic path).
    CrashPanic,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub debug: bool,
    pub blk: Defaults,
    /// `ip=<a.b.c.d>/<prefix>` and `gw=<a.b.c.d>`: the vif's IPv4 configuration.
    pub ip: Option<Ipv4Config>,
    /// `iommu-probe`: prove the IOMMU stops a DMA to an unmapped address (test beds).
    pub iommu_probe: bool,
    /// Words that were not understood, as sentences for the console.
    pub ignored: Vec<String>,
}

impl Config {
    pub fn parse(cmdline: &str) -> Self {
        let mut c = Config {
            mode: Mode::Serve,
            debug: false,
            blk: Defaults::default(),
            ip: None,
            iommu_probe: false,
            ignored: Vec::new(),
        };
        let mut gw = None;
        for w in cmdline.split_whitespace() {
            let ok = match w.split_once('=') {
                None => match w {
                    "debug" => {
                        c.debug = true;
                        true
                    }
                    "selftest" => {
                        c.mode = Mode::Selftest;
                        true
                    }
                    "iommu-probe" => {
                        c.iommu_probe = true;
                        true
                    }
                    _ => false,
                },
                Some(("path", "map")) => {
                    c.blk.path = DataPath::Map;
                    true
                }
                Some(("path", "copy")) => {
                    c.blk.path = DataPath::Copy;
                    true
                }
                Some(("persistent", v @ ("0" | "1"))) => {
                    c.blk.persistent = v == "1";
                    true
                }
                Some(("indirect", v)) => match v.parse::<u16>() {
                    Ok(n) if (12..=4096).contains(&n) => {
                        c.blk.max_indirect_segments = n;
                        true
                    }
                    _ => false,
                },
                Some(("ip", v)) => match parse_cidr(v) {
                    Some((addr, prefix)) => {
                        c.ip = Some(Ipv4Config { addr, prefix, gateway: None });
                        true
                    }
                    None => false,
                },
                Some(("nbd-timeout", v)) => match v.parse::<u64>() {
                    Ok(s) if (1..=3600).contains(&s) => {
                        c.blk.nbd_window_ns = s.saturating_mul(1_000_000_000);
                        true
                    }
                    _ => false,
                },
                Some(("gw", v)) => match parse_ipv4(v) {
                    Some(a) => {
                        gw = Some(a);
                        true
                    }
                    None => false,
                },
                Some(("crashtest", "ud2")) => {
                    c.mode = Mode::CrashUd2;
                    true
                }
                Some(("crashtest", "panic")) => {
                    c.mode = Mode::CrashPanic;
                    true
                }
                Some(_) => false,
            };
            if !ok {
                // Cut: the command line is the toolstack user's, but a console line is not
                // the place for a kilobyte of it.
                let shown: String = w.chars().take(64).collect();
                c.ignored.push(format!("ignored command-line word `{shown}`"));
            }
        }
        if let Some(ip) = c.ip.as_mut() {
            ip.gateway = gw;
        }
        c
    }
}

/// Addresses on the command line are read by the NBD URI parser's rule.
pub use nbd::uri::parse_ipv4;

/// `a.b.c.d/n` with 1 <= n <= 32.
fn parse_cidr(s: &str) -> Option<([u8; 4], u8)> {
    let (a, n) = s.split_once('/')?;
    let n: u8 = n.parse().ok().filter(|n| (1..=32).contains(n))?;
    Some((parse_ipv4(a)?, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_words() {
        let c = Config::parse("");
        assert_eq!(
            c,
            Config {
                mode: Mode::Serve,
                debug: false,
                blk: Defaults::default(),
                ip: None,
                iommu_probe: false,
                ignored: Vec::new()
            }
        );
        assert_eq!(
            c.blk,
            Defaults {
                path: DataPath::Map,
                persistent: true,
                max_indirect_segments: 256,
                nbd_window_ns: 60_000_000_000,
                persistent_budget: 16 * blkback::persistent::DEFAULT_CAP,
            }
        );
    }

    #[test]
    fn every_word() {
        let c = Config::parse("  path=copy persistent=0\tindirect=4096 debug ");
        assert_eq!(
            c.blk,
            Defaults { path: DataPath::Copy, persistent: false, max_indirect_segments: 4096, ..Defaults::default() }
        );
        assert_eq!(Config::parse("nbd-timeout=10").blk.nbd_window_ns, 10_000_000_000);
        assert!(c.debug);
        assert_eq!(c.mode, Mode::Serve);
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
        assert_eq!(Config::parse("selftest").mode, Mode::Selftest);
        assert!(Config::parse("iommu-probe").iommu_probe);
        assert_eq!(Config::parse("crashtest=ud2").mode, Mode::CrashUd2);
        assert_eq!(Config::parse("crashtest=panic").mode, Mode::CrashPanic);
        assert_eq!(Config::parse("indirect=12").blk.max_indirect_segments, 12);
        // The last word wins.
        assert_eq!(Config::parse("path=copy path=map").blk.path, DataPath::Map);
        let c = Config::parse("ip=192.0.2.2/24 gw=192.0.2.1");
        assert_eq!(c.ip.map(|ip| alloc::format!("{ip}")).as_deref(), Some("192.0.2.2/24 via 192.0.2.1"));
        assert_eq!(c.ip, Some(Ipv4Config { addr: [192, 0, 2, 2], prefix: 24, gateway: Some([192, 0, 2, 1]) }));
        assert!(c.ignored.is_empty());
    }

    #[test]
    fn bad_words_are_reported_and_change_nothing() {
        let c = Config::parse(
            "indirect=11 indirect=4097 indirect=x persistent=yes path=swap crashtest=now verbose ip=1.2.3.4 ip=1.2.3.4/33 gw=1.2.3",
        );
        assert_eq!(c.blk, Defaults::default());
        assert_eq!(c.mode, Mode::Serve);
        assert!(!c.debug);
        assert_eq!(c.ip, None);
        assert_eq!(c.ignored.len(), 10, "{:?}", c.ignored);
        assert_eq!(c.ignored[0], "ignored command-line word `indirect=11`");
        let long = "x".repeat(1000);
        let c = Config::parse(&long);
        assert_eq!(c.ignored[0].len(), "ignored command-line word ``".len() + 64);
    }
}
