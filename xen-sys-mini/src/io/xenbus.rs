//! `io/xenbus.h`: the xenbus device states written to `<dir>/state`.

/// `enum xenbus_state`
#[doc(alias = "xenbus_state")]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XenbusState {
    #[doc(alias = "XenbusStateUnknown")]
    Unknown = 0,
    #[doc(alias = "XenbusStateInitialising")]
    Initialising = 1,
    /// Backend: waiting for information from the peer (libxl waits for this).
    #[doc(alias = "XenbusStateInitWait")]
    InitWait = 2,
    /// Frontend: ring and event channel published.
    #[doc(alias = "XenbusStateInitialised")]
    Initialised = 3,
    #[doc(alias = "XenbusStateConnected")]
    Connected = 4,
    #[doc(alias = "XenbusStateClosing")]
    Closing = 5,
    #[doc(alias = "XenbusStateClosed")]
    Closed = 6,
    #[doc(alias = "XenbusStateReconfiguring")]
    Reconfiguring = 7,
    #[doc(alias = "XenbusStateReconfigured")]
    Reconfigured = 8,
}

impl XenbusState {
    /// Parses the numeric value read from xenstore; `None` for anything outside the enum.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Unknown,
            1 => Self::Initialising,
            2 => Self::InitWait,
            3 => Self::Initialised,
            4 => Self::Connected,
            5 => Self::Closing,
            6 => Self::Closed,
            7 => Self::Reconfiguring,
            8 => Self::Reconfigured,
            _ => return None,
        })
    }
}
