//! The xenstore wire format (`io/xs_wire.h`): message headers, replies and watch events,
//! as pure functions over bytes, so what xenstored sends is validated in one place and
//! tested on the host. Replies are hostile input: a payload longer than
//! `XENSTORE_PAYLOAD_MAX`, an unknown type, a reply to a request id we did not send, an
//! error name we do not know, or a malformed watch event are errors, never panics.
use alloc::string::String;
use alloc::vec::Vec;

use xen_hv::WatchEvent;
use xen_sys_mini::io::xs_wire::{xs, XsdSockmsg, XENSTORE_PAYLOAD_MAX, XSD_ERRORS};

/// Size of `struct xsd_sockmsg`.
pub const HEADER_LEN: usize = core::mem::size_of::<XsdSockmsg>();

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XsError {
    /// xenstored answered with an error (the errno of its name, e.g. ENOENT = 2).
    Errno(i32, &'static str),
    /// The ring or a reply broke the protocol (who: xenstored, or memory corruption).
    Protocol(&'static str),
    /// No answer in time.
    Timeout,
    /// A reply that is not UTF-8 where text was expected.
    NotText,
}

impl XsError {
    pub fn is_enoent(&self) -> bool {
        matches!(self, XsError::Errno(xen_sys_mini::errno::ENOENT, _))
    }
    pub fn is_eagain(&self) -> bool {
        matches!(self, XsError::Errno(xen_sys_mini::errno::EAGAIN, _))
    }
}

impl core::fmt::Display for XsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            XsError::Errno(_, n) => write!(f, "xenstored says {n}"),
            XsError::Protocol(w) => write!(f, "xenstore protocol error: {w}"),
            XsError::Timeout => write!(f, "xenstored did not answer in time"),
            XsError::NotText => write!(f, "xenstore reply is not text"),
        }
    }
}

/// The header of a request.
pub fn encode_header(type_: u32, req_id: u32, tx_id: u32, len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    for (chunk, v) in h.chunks_exact_mut(4).zip([type_, req_id, tx_id, len]) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    h
}

/// Decodes and checks a header xenstored wrote.
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<XsdSockmsg, XsError> {
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let hdr = XsdSockmsg { type_: word(0), req_id: word(4), tx_id: word(8), len: word(12) };
    if hdr.len as usize > XENSTORE_PAYLOAD_MAX {
        return Err(XsError::Protocol("payload longer than XENSTORE_PAYLOAD_MAX"));
    }
    if hdr.type_ >= xs::TYPE_COUNT {
        return Err(XsError::Protocol("unknown message type"));
    }
    Ok(hdr)
}

/// A watch event's payload: "path\0token\0" (`XS_WATCH_PATH`, `XS_WATCH_TOKEN`).
pub fn decode_watch_event(payload: &[u8]) -> Result<WatchEvent, XsError> {
    let mut parts = payload.split(|&b| b == 0);
    let (Some(p), Some(t)) = (parts.next(), parts.next()) else {
        return Err(XsError::Protocol("malformed watch event"));
    };
    if payload.last() != Some(&0) || p.len().saturating_add(t.len()).saturating_add(2) > payload.len() {
        return Err(XsError::Protocol("malformed watch event"));
    }
    let path = String::from_utf8(p.to_vec()).map_err(|_| XsError::Protocol("watch event path not text"))?;
    let token = String::from_utf8(t.to_vec()).map_err(|_| XsError::Protocol("watch event token not text"))?;
    if path.is_empty() {
        return Err(XsError::Protocol("watch event with an empty path"));
    }
    Ok(WatchEvent { path, token })
}

/// What one message from xenstored is, given the request we are waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A watch event (it can arrive at any time).
    Event(WatchEvent),
    /// The answer to our request: its payload.
    Reply(Vec<u8>),
    /// The late answer to a request we gave up waiting for (`abandoned`): dropped.
    Stale(u32),
}

/// Classifies a message against our outstanding request (`type_`, `req_id`) and the
/// requests we gave up on (`abandoned`, whose replies may still come).
pub fn classify(
    hdr: &XsdSockmsg,
    payload: Vec<u8>,
    type_: u32,
    req_id: u32,
    abandoned: &[u32],
) -> Result<Incoming, XsError> {
    if hdr.type_ == xs::WATCH_EVENT {
        return decode_watch_event(&payload).map(Incoming::Event);
    }
    if hdr.req_id != req_id {
        if abandoned.contains(&hdr.req_id) {
            return Ok(Incoming::Stale(hdr.req_id));
        }
        return Err(XsError::Protocol("reply to a request id we did not send"));
    }
    if hdr.type_ == xs::ERROR {
        let name = payload.split(|&b| b == 0).next().unwrap_or(&[]);
        let e =
            XSD_ERRORS.iter().find(|(n, _)| n.as_bytes() == name).copied().unwrap_or(("EIO", xen_sys_mini::errno::EIO));
        return Err(XsError::Errno(e.1, e.0));
    }
    if hdr.type_ != type_ {
        return Err(XsError::Protocol("reply of another type than the request"));
    }
    Ok(Incoming::Reply(payload))
}

/// The NUL-separated strings of a `DIRECTORY` or `GET_PERMS` reply.
pub fn decode_list(payload: &[u8]) -> Result<Vec<String>, XsError> {
    payload
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).map_err(|_| XsError::NotText))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn hdr(type_: u32, req_id: u32, len: u32) -> XsdSockmsg {
        decode_header(&encode_header(type_, req_id, 0, len)).expect("valid header")
    }

    #[test]
    fn header_round_trip_and_limits() {
        let h = hdr(xs::READ, 7, 12);
        assert_eq!((h.type_, h.req_id, h.tx_id, h.len), (xs::READ, 7, 0, 12));
        assert_eq!(
            decode_header(&encode_header(xs::READ, 1, 0, XENSTORE_PAYLOAD_MAX as u32 + 1)),
            Err(XsError::Protocol("payload longer than XENSTORE_PAYLOAD_MAX"))
        );
        assert_eq!(
            decode_header(&encode_header(xs::TYPE_COUNT, 1, 0, 0)),
            Err(XsError::Protocol("unknown message type"))
        );
        assert!(decode_header(&encode_header(xs::WATCH_EVENT, 0, 0, XENSTORE_PAYLOAD_MAX as u32)).is_ok());
    }

    #[test]
    fn replies_are_matched_to_our_request() {
        let ok = classify(&hdr(xs::READ, 5, 3), b"abc".to_vec(), xs::READ, 5, &[]);
        assert_eq!(ok, Ok(Incoming::Reply(b"abc".to_vec())));
        assert_eq!(
            classify(&hdr(xs::READ, 6, 0), vec![], xs::READ, 5, &[]),
            Err(XsError::Protocol("reply to a request id we did not send"))
        );
        assert_eq!(
            classify(&hdr(xs::WRITE, 5, 0), vec![], xs::READ, 5, &[]),
            Err(XsError::Protocol("reply of another type than the request"))
        );
        let e = classify(&hdr(xs::ERROR, 5, 7), b"ENOENT\0".to_vec(), xs::READ, 5, &[]).unwrap_err();
        assert!(e.is_enoent());
        assert_eq!(alloc::string::ToString::to_string(&e), "xenstored says ENOENT");
        let e = classify(&hdr(xs::ERROR, 5, 7), b"EAGAIN\0".to_vec(), xs::READ, 5, &[]).unwrap_err();
        assert!(e.is_eagain());
        // An error name we do not know is EIO, not a panic or a success.
        assert_eq!(classify(&hdr(xs::ERROR, 5, 4), b"EWAT".to_vec(), xs::READ, 5, &[]), Err(XsError::Errno(5, "EIO")));
    }

    #[test]
    fn a_late_reply_to_an_abandoned_request_is_dropped_not_an_error() {
        assert_eq!(classify(&hdr(xs::READ, 4, 3), b"old".to_vec(), xs::READ, 5, &[4]), Ok(Incoming::Stale(4)));
        assert_eq!(
            classify(&hdr(xs::READ, 3, 0), vec![], xs::READ, 5, &[4]),
            Err(XsError::Protocol("reply to a request id we did not send"))
        );
        assert_eq!(
            classify(&hdr(xs::READ, 5, 3), b"new".to_vec(), xs::READ, 5, &[4]),
            Ok(Incoming::Reply(b"new".to_vec()))
        );
    }

    #[test]
    fn watch_events_are_checked() {
        let ev = classify(&hdr(xs::WATCH_EVENT, 0, 0), b"/a/b\0tok\0".to_vec(), xs::READ, 5, &[]);
        assert_eq!(ev, Ok(Incoming::Event(WatchEvent { path: "/a/b".into(), token: "tok".into() })));
        for bad in [&b""[..], b"/a/b", b"/a/b\0tok", b"\0tok\0", b"/a/\xff\0tok\0", b"/a\0t\xfe\0"] {
            assert!(decode_watch_event(bad).is_err(), "{bad:?}");
        }
        // An empty token is legal (xenstored passes through what the watcher gave).
        assert_eq!(decode_watch_event(b"/x\0\0").map(|e| e.token), Ok(String::new()));
    }

    #[test]
    fn lists() {
        assert_eq!(decode_list(b"a\0bb\0\0c\0"), Ok(vec!["a".into(), "bb".into(), "c".into()]));
        assert_eq!(decode_list(b""), Ok(vec![]));
        assert_eq!(decode_list(b"a\0\xff\0"), Err(XsError::NotText));
    }
}
