//! Memory shared with another domain, and how an access to it fails.
use core::fmt;

/// An access outside a page, or a write the mapping does not permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// The offset and length do not fit in the page (our bug, or a bad length a frontend
    /// gave and validation missed).
    OutOfBounds,
    /// The page is mapped read-only (the frontend granted it read-only).
    ReadOnly,
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemError::OutOfBounds => "access outside the page",
            MemError::ReadOnly => "write to a read-only mapping",
        })
    }
}

/// A page shared with another domain: a ring page, a mapped grant, or one of our frames.
///
/// Implementations never hand out references into the page: the other side may change it
/// at any moment. Reads are copies; ring indices are loaded and stored as atomics.
pub trait Page {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError>;
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError>;
    /// An aligned `u32` with acquire ordering (ring producer indices).
    fn load_u32(&self, off: usize) -> Result<u32, MemError>;
    /// An aligned `u32` with release ordering (ring indices we own).
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError>;
    /// A full memory barrier (`xen_mb()`).
    fn fence(&self);
}

/// A shared mapping (a persistent grant used by several in-flight segments) is a page too.
impl<P: Page + ?Sized> Page for alloc::rc::Rc<P> {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        (**self).read(off, dst)
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError> {
        (**self).write(off, src)
    }
    fn load_u32(&self, off: usize) -> Result<u32, MemError> {
        (**self).load_u32(off)
    }
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError> {
        (**self).store_u32(off, v)
    }
    fn fence(&self) {
        (**self).fence();
    }
}
