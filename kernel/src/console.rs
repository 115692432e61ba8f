//! The console: Xen's PV console ring (`io/console.h`, found through
//! `HVM_PARAM_CONSOLE_PFN`/`_EVTCHN`) once it is set up, so `xl console` and xenconsoled's
//! logs show the output; before that, the early path.
//!
//! Early path: `HYPERVISOR_console_io(CONSOLEIO_write)` is refused to unprivileged domains by
//! release builds of Xen (XSM dummy policy: only with `CONFIG_VERBOSE_DEBUG`), so the early
//! console also writes Xen's HVM debug port 0xe9, which Xen prints on its own console as
//! `(dN) ...` at `guest_loglvl`. Panics and exception dumps go to both, always.
//!
//! Every line is prefixed with seconds since boot from the pv clock and its level, and is
//! cut at `MAX_LINE` bytes. Log lines never wait for xenconsoled: a line that does not fit
//! in the ring is dropped and counted (`dropped_lines`), and the next line that fits says
//! how many were lost, so a flood (or a throttled xenconsoled) cannot stall the service
//! loop. Panics, exception dumps and `flush` still wait, bounded.
use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use xen_sys_mini::io::console::{XenconsInterface, XENCONS_OUT_SIZE};
use xen_sys_mini::EvtchnPort;

use crate::shared::SharedMem;
use crate::{arch, evtchn, hypercall, sched, time};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static CONSOLE_IO_WORKS: AtomicBool = AtomicBool::new(true);
static RING: spin::Mutex<Option<PvConsole>> = spin::Mutex::new(None);
/// Log lines dropped because the ring was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Log lines dropped and not yet reported on the console.
static UNREPORTED: AtomicU64 = AtomicU64::new(0);

/// The longest line written, in bytes (longer ones end in `[...]`).
pub const MAX_LINE: usize = 512;

/// Offsets in `struct xencons_interface` (`io/console.h`).
const OUT_OFF: usize = core::mem::offset_of!(XenconsInterface, out);
const OUT_CONS: usize = core::mem::offset_of!(XenconsInterface, out_cons);
const OUT_PROD: usize = core::mem::offset_of!(XenconsInterface, out_prod);

#[derive(Debug)]
struct PvConsole {
    page: SharedMem,
    port: EvtchnPort,
}

impl PvConsole {
    /// Appends `data` to the out ring only if all of it fits now; never waits.
    fn try_write(&self, data: &[u8]) -> bool {
        let (Ok(cons), Ok(prod)) = (self.page.atomic_u32(OUT_CONS), self.page.atomic_u32(OUT_PROD)) else {
            return false;
        };
        let c = cons.load(Ordering::Acquire);
        let p = prod.load(Ordering::Relaxed);
        let used = p.wrapping_sub(c) as usize;
        if used > XENCONS_OUT_SIZE || XENCONS_OUT_SIZE - used < data.len() {
            // Full, or xenconsoled wrote nonsense: kick it, drop the line.
            evtchn::notify(self.port);
            return false;
        }
        for (i, b) in data.iter().enumerate() {
            let idx = (p as usize + i) % XENCONS_OUT_SIZE;
            let _ = self.page.write_bytes(OUT_OFF + idx, core::slice::from_ref(b));
        }
        // The bytes must be visible before the new producer index (io/console.h).
        prod.store(p.wrapping_add(data.len() as u32), Ordering::Release);
        evtchn::notify(self.port);
        true
    }

    /// Appends bytes to the out ring, waiting (bounded) for xenconsoled to make room.
    fn write(&self, mut data: &[u8]) {
        let (Ok(cons), Ok(prod)) = (self.page.atomic_u32(OUT_CONS), self.page.atomic_u32(OUT_PROD)) else {
            return;
        };
        let mut waited = 0;
        while !data.is_empty() {
            let c = cons.load(Ordering::Acquire);
            let p = prod.load(Ordering::Relaxed);
            let used = p.wrapping_sub(c) as usize;
            if used >= XENCONS_OUT_SIZE {
                // Full (or xenconsoled wrote nonsense): kick it and wait a little; give up
                // after ~2 s so a dead console cannot hang the driver domain.
                evtchn::notify(self.port);
                if waited > 200 {
                    return;
                }
                waited += 1;
                let _ = sched::poll(&[self.port], time::system_time_ns() + 10_000_000);
                evtchn::clear(self.port);
                continue;
            }
            let n = (XENCONS_OUT_SIZE - used).min(data.len());
            for (i, b) in data[..n].iter().enumerate() {
                let idx = (p as usize + i) % XENCONS_OUT_SIZE;
                let _ = self.page.write_bytes(OUT_OFF + idx, core::slice::from_ref(b));
            }
            // The bytes must be visible before the new producer index (io/console.h).
            prod.store(p.wrapping_add(n as u32), Ordering::Release);
            data = &data[n..];
        }
        evtchn::notify(self.port);
    }

    fn flush(&self) {
        let (Ok(cons), Ok(prod)) = (self.page.atomic_u32(OUT_CONS), self.page.atomic_u32(OUT_PROD)) else {
            return;
        };
        for _ in 0..100 {
            if cons.load(Ordering::Acquire) == prod.load(Ordering::Relaxed) {
                return;
            }
            evtchn::notify(self.port);
            let _ = sched::poll(&[self.port], time::system_time_ns() + 10_000_000);
            evtchn::clear(self.port);
        }
    }
}

fn early_write(bytes: &[u8]) {
    for &b in bytes {
        arch::outb(0xe9, b);
    }
    if CONSOLE_IO_WORKS.load(Ordering::Relaxed) {
        // SAFETY: CONSOLEIO_write(len, buf) reads `len` bytes from a live slice.
        let r = unsafe {
            hypercall::hypercall(
                xen_sys_mini::hypercall::CONSOLE_IO,
                u64::from(xen_sys_mini::CONSOLEIO_WRITE),
                bytes.len() as u64,
                bytes.as_ptr() as u64,
                0,
                0,
            )
        };
        if r < 0 {
            CONSOLE_IO_WORKS.store(false, Ordering::Relaxed);
        }
    }
}

fn write_bytes(bytes: &[u8]) {
    let ring = RING.lock();
    match ring.as_ref() {
        Some(c) => c.write(bytes),
        None => early_write(bytes),
    }
}

/// A log line: written whole if the ring has room now, else dropped and counted.
fn write_line(bytes: &[u8]) {
    let ring = RING.lock();
    let Some(c) = ring.as_ref() else {
        early_write(bytes);
        return;
    };
    let lost = UNREPORTED.load(Ordering::Relaxed);
    if lost > 0 {
        let mut note: heapless::String<64> = heapless::String::new();
        let _ = writeln!(note, "[console: {lost} line(s) dropped, ring full]");
        if c.try_write(note.as_bytes()) {
            UNREPORTED.fetch_sub(lost, Ordering::Relaxed);
        }
    }
    if !c.try_write(bytes) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        UNREPORTED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Log lines dropped since boot because xenconsoled had not made room.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Switches output to the PV console ring at `pfn`, signalled on `port`.
pub fn init_pv(pfn: u64, port: EvtchnPort) {
    // SAFETY: HVM_PARAM_CONSOLE_PFN names a page Xen set up for the console, below 4 GiB and
    // thus identity-mapped since boot; we keep it for the domain's lifetime.
    let page = unsafe { SharedMem::new(pfn << 12, 4096) };
    *RING.lock() = Some(PvConsole { page, port });
}

pub fn set_max_level(l: Level) {
    MAX_LEVEL.store(l as u8, Ordering::Relaxed);
}

pub fn enabled(l: Level) -> bool {
    l as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Waits (bounded) until xenconsoled has read everything.
pub fn flush() {
    if let Some(r) = RING.try_lock() {
        if let Some(c) = r.as_ref() {
            c.flush();
        }
    }
}

/// Collects one log line (cut at `MAX_LINE`) for a single ring update.
struct LineBuf {
    buf: heapless::String<MAX_LINE>,
    cut: bool,
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            if self.buf.push(ch).is_err() {
                self.cut = true;
                break;
            }
        }
        Ok(())
    }
}

impl LineBuf {
    /// The line, ending in a newline (and `[...]` if it was cut).
    fn finish(&mut self) -> &[u8] {
        if self.cut {
            const TAIL: &str = " [...]\n";
            while self.buf.len() > MAX_LINE - TAIL.len() {
                self.buf.pop();
            }
            let _ = self.buf.push_str(TAIL);
        }
        self.buf.as_bytes()
    }
}

/// Writes one timestamped line at `level` (see the `info!`/`warn!`/... macros).
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let ns = time::since_boot_ns();
    let tag = match level {
        Level::Error => "ERROR ",
        Level::Warn => "WARN ",
        Level::Info => "",
        Level::Debug => "debug ",
    };
    let mut l = LineBuf { buf: heapless::String::new(), cut: false };
    let _ = writeln!(l, "[{:5}.{:06}] {tag}{args}", ns / 1_000_000_000, (ns / 1000) % 1_000_000);
    write_line(l.finish());
}

/// For panics and exception dumps: the debug port always, and the ring if it is not locked
/// (the failing code may hold the lock).
pub fn emergency(args: fmt::Arguments<'_>) {
    struct Early;
    impl fmt::Write for Early {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for &b in s.as_bytes() {
                arch::outb(0xe9, b);
            }
            Ok(())
        }
    }
    let _ = Early.write_fmt(args);
    if let Some(r) = RING.try_lock() {
        if let Some(c) = r.as_ref() {
            // Whole, waiting (bounded) for room: this may be the last thing the domain says.
            struct Waiting<'a>(&'a PvConsole);
            impl fmt::Write for Waiting<'_> {
                fn write_str(&mut self, s: &str) -> fmt::Result {
                    self.0.write(s.as_bytes());
                    Ok(())
                }
            }
            let _ = Waiting(c).write_fmt(args);
        }
    }
}

/// The console as an `embedded_io::Write` sink (raw bytes, no timestamps).
#[derive(Debug, Clone, Copy, Default)]
pub struct Console;

impl embedded_io::ErrorType for Console {
    type Error = core::convert::Infallible;
}

impl embedded_io::Write for Console {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        write_bytes(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        flush();
        Ok(())
    }
}

#[macro_export]
macro_rules! info {
    ($($a:tt)*) => { $crate::console::log($crate::console::Level::Info, format_args!($($a)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($a:tt)*) => { $crate::console::log($crate::console::Level::Warn, format_args!($($a)*)) };
}
#[macro_export]
macro_rules! error {
    ($($a:tt)*) => { $crate::console::log($crate::console::Level::Error, format_args!($($a)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($a:tt)*) => { $crate::console::log($crate::console::Level::Debug, format_args!($($a)*)) };
}
