//! `target=` in the xl disk spec, which libxl stores as the backend's `params` key: what
//! disk a vbd is. Written by the toolstack (dom0), still parsed strictly: a bad string is
//! refused with a sentence that says what would have been accepted.
use alloc::string::String;
use core::fmt;

use crate::engine::DataPath;

/// What a `target=` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    /// `copy` / `map` option: the data path (default: the driver domain's `path=`).
    pub path: Option<DataPath>,
    /// `nopersist` / `persist`: whether to offer persistent grants.
    pub persistent: Option<bool>,
    /// `pool=<n>`: at most n persistent grants kept (default: what the frontend can keep
    /// granted, within the domain's budget; `pool=1056` is Linux's per-queue default).
    pub pool: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// `ram:<size>`: a zero-filled RAM disk of that many bytes.
    Ram(u64),
    /// `null:<size>`: completes without storing (benchmark ceiling).
    Null(u64),
    /// `module[:<n>]`: boot module n (default 0), served in place.
    Module(usize),
    /// `nbd://<host>[:<port>]/<export>`: an export on an NBD server.
    Nbd(nbd::uri::NbdUri),
    /// `nvme:<n>[/<nsid>]`: namespace `nsid` (default 1) of the driver domain's NVMe
    /// controller `n` (its controllers numbered from 0 in PCI order: with one `pci=` entry
    /// in its xl config, `nvme:0`).
    Nvme { ctl: u8, nsid: u32 },
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetKind::Ram(s) => write!(f, "RAM disk {} MiB", s >> 20),
            TargetKind::Null(s) => write!(f, "null disk {} MiB", s >> 20),
            TargetKind::Module(n) => write!(f, "boot module {n}"),
            TargetKind::Nbd(u) => write!(f, "NBD export `{}` on {}:{}", u.export, u.host, u.port),
            TargetKind::Nvme { ctl, nsid } => write!(f, "NVMe controller {ctl} namespace {nsid}"),
        }
    }
}

/// Why a `target=` string was refused (the toolstack user's input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// `ram`/`null` without a size.
    NeedsSize(String),
    /// A size that is not digits with an optional K/M/G, below 4K or not sector-aligned.
    BadSize(String),
    UnknownKind(String),
    UnknownOption(String),
    BadUri(nbd::uri::UriError),
    /// `nvme:` without a controller number, or a bad namespace id.
    BadNvme(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::NeedsSize(k) => write!(f, "`{k}` needs a size, e.g. {k}:64M"),
            TargetError::BadSize(s) => {
                write!(f, "bad size `{s}` (digits, optional K/M/G, at least 4K, a multiple of 512)")
            }
            TargetError::UnknownKind(k) => {
                write!(
                    f,
                    "unknown target `{k}`: use ram:<size>, null:<size>, module[:<n>], nvme:<n>[/<nsid>] or nbd://<host>[:<port>]/<export>"
                )
            }
            TargetError::UnknownOption(o) => {
                write!(f, "unknown target option `{o}` (copy, map, nopersist, persist, pool=<n>; noop for null; swap for ram)")
            }
            TargetError::BadUri(e) => write!(f, "{e}"),
            TargetError::BadNvme(s) => write!(
                f,
                "bad NVMe target `{s}` (nvme:<controller>[/<namespace id>], e.g. nvme:0 or nvme:0/2; controllers count from 0, namespaces from 1)"
            ),
        }
    }
}

/// Parses a size: digits with an optional K/M/G suffix (binary units), at least 4 KiB and
/// a whole number of sectors.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.as_bytes().last()? {
        b'K' | b'k' => (s.get(..s.len().saturating_sub(1))?, 1u64 << 10),
        b'M' | b'm' => (s.get(..s.len().saturating_sub(1))?, 1 << 20),
        b'G' | b'g' => (s.get(..s.len().saturating_sub(1))?, 1 << 30),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 12 {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mul).filter(|&v| v >= 4096 && v % 512 == 0)
}

/// `<n>[/<nsid>]`: a controller number below 256 and a namespace id from 1 (NVMe reserves
/// 0 and 0xffffffff, the broadcast id).
fn parse_nvme(spec: &str) -> Option<TargetKind> {
    let (ctl, nsid) = match spec.split_once('/') {
        Some((c, n)) => (c, n),
        None => (spec, "1"),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ctl) || !digits(nsid) {
        return None;
    }
    let ctl = ctl.parse::<u8>().ok()?;
    let nsid = nsid.parse::<u32>().ok().filter(|&n| n != 0 && n != u32::MAX)?;
    Some(TargetKind::Nvme { ctl, nsid })
}

/// Parses `target=`: `ram:64M`, `null:1G`, `module`, `module:1`, each optionally followed
/// by `:copy`, `:map`, `:nopersist`, `:persist`; a null disk also by `:noop` (answer every
/// request without touching its grants: the benchmark's transport ceiling).
pub fn parse(params: &str) -> Result<Target, TargetError> {
    // A URI has its own colons: the whole string is the URI (no options).
    if params.trim().starts_with("nbd") && params.contains("://") {
        let uri = nbd::uri::NbdUri::parse(params).map_err(TargetError::BadUri)?;
        return Ok(Target { kind: TargetKind::Nbd(uri), path: None, persistent: None, pool: None });
    }
    let mut parts = params.trim().split(':');
    let kind = parts.next().unwrap_or("");
    let mut rest = parts.peekable();
    let kind = match kind {
        "ram" | "null" => {
            let size = rest.next().ok_or_else(|| TargetError::NeedsSize(String::from(kind)))?;
            let bytes = parse_size(size).ok_or_else(|| TargetError::BadSize(String::from(size)))?;
            if kind == "ram" {
                TargetKind::Ram(bytes)
            } else {
                TargetKind::Null(bytes)
            }
        }
        "module" => {
            let n = rest.peek().and_then(|s| s.parse::<usize>().ok());
            if n.is_some() {
                rest.next();
            }
            TargetKind::Module(n.unwrap_or(0))
        }
        "nvme" => {
            let spec = rest.next().unwrap_or("");
            parse_nvme(spec).ok_or_else(|| TargetError::BadNvme(String::from(spec)))?
        }
        other => return Err(TargetError::UnknownKind(String::from(other))),
    };
    let mut t = Target { kind, path: None, persistent: None, pool: None };
    for opt in rest {
        match opt {
            "copy" => t.path = Some(DataPath::Copy),
            // Frame exchange (a patched hypervisor; else the copy path): RAM disks only.
            "swap" if matches!(t.kind, TargetKind::Ram(_)) => t.path = Some(DataPath::Swap),
            "map" => t.path = Some(DataPath::Map),
            "nopersist" => t.persistent = Some(false),
            "persist" => t.persistent = Some(true),
            // Only a null disk may drop data: `noop` answers without touching anything.
            "noop" if matches!(t.kind, TargetKind::Null(_)) => t.path = Some(DataPath::Noop),
            o if o.strip_prefix("pool=").and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n <= 1 << 20) => {
                t.pool = o.strip_prefix("pool=").and_then(|n| n.parse().ok());
            }
            o => return Err(TargetError::UnknownOption(String::from(o))),
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(
            parse("ram:64M"),
            Ok(Target { kind: TargetKind::Ram(64 << 20), path: None, persistent: None, pool: None })
        );
        assert_eq!(
            parse(" null:1G "),
            Ok(Target { kind: TargetKind::Null(1 << 30), path: None, persistent: None, pool: None })
        );
        assert_eq!(
            parse("module"),
            Ok(Target { kind: TargetKind::Module(0), path: None, persistent: None, pool: None })
        );
        assert_eq!(
            parse("module:2:copy:nopersist"),
            Ok(Target { kind: TargetKind::Module(2), path: Some(DataPath::Copy), persistent: Some(false), pool: None })
        );
        // An option right after `module` is an option, not a module number.
        assert_eq!(
            parse("module:map"),
            Ok(Target { kind: TargetKind::Module(0), path: Some(DataPath::Map), persistent: None, pool: None })
        );
        assert_eq!(parse("ram:4096").map(|t| t.kind), Ok(TargetKind::Ram(4096)));
        assert_eq!(parse("ram:8k:persist").map(|t| t.persistent), Ok(Some(true)));
        assert_eq!(parse("ram:8k:pool=1056").map(|t| t.pool), Ok(Some(1056)));
        assert_eq!(parse("ram:8k:pool=x"), Err(TargetError::UnknownOption("pool=x".into())));
        assert_eq!(parse("ram:8k:swap").map(|t| t.path), Ok(Some(DataPath::Swap)));
        assert_eq!(parse("null:8k:swap"), Err(TargetError::UnknownOption("swap".into())));
        assert_eq!(
            parse("null:1G:noop:nopersist").map(|t| (t.path, t.persistent)),
            Ok((Some(DataPath::Noop), Some(false)))
        );
        let uri = nbd::uri::NbdUri { host: "192.0.2.1".into(), port: 10809, export: "disk0".into() };
        assert_eq!(parse("nbd://192.0.2.1/disk0").map(|t| t.kind), Ok(TargetKind::Nbd(uri)));
        assert!(matches!(parse("nbd://h:x/e"), Err(TargetError::BadUri(_))));
        assert!(matches!(parse("nbds://h/e"), Err(TargetError::BadUri(_))));
        assert_eq!(parse("nvme:0").map(|t| t.kind), Ok(TargetKind::Nvme { ctl: 0, nsid: 1 }));
        assert_eq!(
            parse("nvme:1/3:persist").map(|t| (t.kind, t.persistent)),
            Ok((TargetKind::Nvme { ctl: 1, nsid: 3 }, Some(true)))
        );
    }

    #[test]
    fn nvme_targets_name_a_controller_and_a_real_namespace() {
        for bad in
            ["nvme", "nvme:", "nvme:x", "nvme:0/0", "nvme:0/4294967295", "nvme:256", "nvme:0/", "nvme:/1", "nvme:-1"]
        {
            assert!(matches!(parse(bad), Err(TargetError::BadNvme(_))), "{bad}");
        }
        // Options still follow, and only the valid ones.
        assert_eq!(parse("nvme:0:swap"), Err(TargetError::UnknownOption("swap".into())));
    }

    #[test]
    fn refused_forms_say_why() {
        assert_eq!(parse("ram"), Err(TargetError::NeedsSize("ram".into())));
        assert_eq!(parse("null:"), Err(TargetError::BadSize("".into())));
        for bad in ["ram:1K", "ram:4097", "ram:-4M", "ram:4MM", "ram:0x1000", "ram:9999999999999G", "ram:M"] {
            assert!(matches!(parse(bad), Err(TargetError::BadSize(_))), "{bad}");
        }
        assert_eq!(parse("/dev/sda"), Err(TargetError::UnknownKind("/dev/sda".into())));
        assert_eq!(parse(""), Err(TargetError::UnknownKind("".into())));
        assert_eq!(parse("ram:4M:fast"), Err(TargetError::UnknownOption("fast".into())));
        // Only a null disk may answer without storing.
        assert_eq!(parse("ram:4M:noop"), Err(TargetError::UnknownOption("noop".into())));
        let msg = alloc::string::ToString::to_string(&parse("ram:4M:fast").unwrap_err());
        assert_eq!(
            msg,
            "unknown target option `fast` (copy, map, nopersist, persist, pool=<n>; noop for null; swap for ram)"
        );
    }
}
