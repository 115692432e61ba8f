//! A hostile blkfront in dom0's user space, for the `hostile` scenario: it plays a
//! frontend through Linux's `/dev/xen/gntalloc` (a ring page granted to the driver
//! domain), `/dev/xen/evtchn` (an event channel to it) and the xenstore tools, gets a
//! vbd of the unikernel to connect, then floods it with notifications that carry no work.
//!
//! `hostile-fe storm --dd <domid> --fe <frontend dir> --be <backend dir> --count N`
//! prints `METRIC hostile.storm {"notifications":N,"secs":S}` and exits (closing the
//! channel and freeing the grant).
//!
//! This is test tooling for a Linux dom0, not the product: its few `unsafe` blocks are the
//! ioctls and the mmap those devices are driven by (`xen/sys/gntalloc.h`, `xen/sys/evtchn.h`).
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

/// `struct ioctl_gntalloc_alloc_gref` (`xen/sys/gntalloc.h`) for one page.
#[repr(C)]
#[derive(Debug, Default)]
struct AllocGref {
    domid: u16,
    flags: u16,
    count: u32,
    index: u64,
    gref_ids: [u32; 1],
}

/// `_IOC(_IOC_NONE, type, nr, size)` on x86_64 Linux.
const fn ioc_none(ty: u8, nr: u8, size: usize) -> u64 {
    ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
}
const IOCTL_GNTALLOC_ALLOC_GREF: u64 = ioc_none(b'G', 5, std::mem::size_of::<AllocGref>());
const GNTALLOC_FLAG_WRITABLE: u16 = 1;
const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u64 = ioc_none(b'E', 2, 4);
const IOCTL_EVTCHN_NOTIFY: u64 = ioc_none(b'E', 4, 4);

fn xs(args: &[&str]) -> Result<String, String> {
    let o = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if !o.status.success() {
        return Err(format!("{args:?}: {}", String::from_utf8_lossy(&o.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

struct Args {
    dd: u16,
    fe: String,
    be: String,
    count: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args { dd: 0, fe: String::new(), be: String::new(), count: 100_000 };
    let mut it = std::env::args().skip(1);
    if it.next().as_deref() != Some("storm") {
        return Err("usage: hostile-fe storm --dd DOMID --fe FRONTEND_DIR --be BACKEND_DIR [--count N]".into());
    }
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        match k.as_str() {
            "--dd" => a.dd = v.parse().map_err(|e| format!("--dd: {e}"))?,
            "--fe" => a.fe = v,
            "--be" => a.be = v,
            "--count" => a.count = v.parse().map_err(|e| format!("--count: {e}"))?,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.fe.is_empty() || a.be.is_empty() || a.dd == 0 {
        return Err("--dd, --fe and --be are needed".into());
    }
    Ok(a)
}

fn run() -> Result<(), String> {
    let a = parse()?;
    // The ring page, granted writable to the driver domain.
    let gnt =
        OpenOptions::new().read(true).write(true).open("/dev/xen/gntalloc").map_err(|e| format!("gntalloc: {e}"))?;
    let mut req = AllocGref { domid: a.dd, flags: GNTALLOC_FLAG_WRITABLE, count: 1, ..AllocGref::default() };
    // SAFETY: IOCTL_GNTALLOC_ALLOC_GREF reads and writes one `ioctl_gntalloc_alloc_gref`
    // with room for `count` = 1 grant reference, which `req` is (repr(C), same layout).
    let r = unsafe { libc::ioctl(gnt.as_raw_fd(), IOCTL_GNTALLOC_ALLOC_GREF as _, &mut req as *mut AllocGref) };
    if r != 0 {
        return Err(format!("IOCTL_GNTALLOC_ALLOC_GREF: {}", std::io::Error::last_os_error()));
    }
    let offset = libc::off_t::try_from(req.index).map_err(|_| "gntalloc index out of range")?;
    // SAFETY: maps the page gntalloc just allocated at `index` (its documented mmap
    // offset), shared, read-write; the result is checked before use.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            gnt.as_raw_fd(),
            offset,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(format!("mmap of the granted page: {}", std::io::Error::last_os_error()));
    }
    // FRONT_RING_INIT (io/ring.h): the shared ring starts with req_prod, req_event,
    // rsp_prod, rsp_event: indices 0, both events 1.
    let header: [u32; 4] = [0, 1, 0, 1];
    // SAFETY: `page` is a live 4096-byte mapping we own; 16 bytes are written at its start.
    unsafe { std::ptr::copy_nonoverlapping(header.as_ptr().cast::<u8>(), page.cast::<u8>(), 16) };
    // The event channel, unbound, for the driver domain to bind.
    let evt: File =
        OpenOptions::new().read(true).write(true).open("/dev/xen/evtchn").map_err(|e| format!("evtchn: {e}"))?;
    let mut remote: u32 = u32::from(a.dd);
    // SAFETY: IOCTL_EVTCHN_BIND_UNBOUND_PORT reads one `ioctl_evtchn_bind_unbound_port`
    // (an unsigned int) and returns the port or -1.
    let port = unsafe { libc::ioctl(evt.as_raw_fd(), IOCTL_EVTCHN_BIND_UNBOUND_PORT as _, &mut remote as *mut u32) };
    if port < 0 {
        return Err(format!("IOCTL_EVTCHN_BIND_UNBOUND_PORT: {}", std::io::Error::last_os_error()));
    }
    let gref = req.gref_ids[0].to_string();
    let port_s = port.to_string();
    xs(&[
        "xenstore-write",
        &format!("{}/ring-ref", a.fe),
        &gref,
        &format!("{}/event-channel", a.fe),
        &port_s,
        &format!("{}/protocol", a.fe),
        "x86_64-abi",
    ])?;
    xs(&["xenstore-write", &format!("{}/state", a.fe), "3"])?;
    let t = Instant::now();
    while xs(&["xenstore-read", &format!("{}/state", a.be)]).ok().as_deref() != Some("4") {
        if t.elapsed() > Duration::from_secs(30) {
            return Err("the backend never connected to the hostile frontend".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    xs(&["xenstore-write", &format!("{}/state", a.fe), "4"])?;
    eprintln!("hostile-fe: connected (gref {gref}, port {port}); {} notifications", a.count);
    let mut p: u32 = u32::try_from(port).map_err(|_| "port")?;
    let t = Instant::now();
    for _ in 0..a.count {
        // SAFETY: IOCTL_EVTCHN_NOTIFY reads one `ioctl_evtchn_notify` (the port).
        let r = unsafe { libc::ioctl(evt.as_raw_fd(), IOCTL_EVTCHN_NOTIFY as _, &mut p as *mut u32) };
        if r != 0 {
            return Err(format!("IOCTL_EVTCHN_NOTIFY: {}", std::io::Error::last_os_error()));
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!("METRIC hostile.storm {{\"notifications\":{},\"secs\":{secs:.3}}}", a.count);
    // Closing: state Closed; the fds go with the process (the grant is freed once the
    // backend unmaps it).
    let _ = xs(&["xenstore-write", &format!("{}/state", a.fe), "6"]);
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("hostile-fe: {e}");
        std::process::exit(1);
    }
}
