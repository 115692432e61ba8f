//! The backend's xenbus state machine as a pure function: what the device should do given
//! what it last published and a snapshot of what xenstore says now. Level-triggered (every
//! watch event re-reads the whole snapshot), so lost or coalesced watch events, and two
//! changes between looks, cannot leave it behind.
//!
//! It follows stock libxl and Linux blkfront (docs/testbed.md, "libxl and driver domains"): advertise and go to
//! InitWait at probe (libxl waits for exactly that); connect when the frontend is
//! Initialised or Connected; follow Closing and Closed; reconnect when a closed frontend
//! starts over; when the toolstack detaches (`online` = 0, or our `state` set to Closing
//! by libxl) and the frontend is gone or closed, go Closed and delete our own directory,
//! which is what libxl waits for.
use alloc::vec::Vec;

use xen_sys_mini::io::xenbus::XenbusState;

/// What xenstore says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The frontend's `state`, `None` if its directory is gone (domain destroyed) or the
    /// value is not a state.
    pub frontend: Option<XenbusState>,
    /// Our `online` (written by the toolstack).
    pub online: bool,
    /// Our `state` as it is in xenstore (the toolstack may have written it).
    pub backend_in_store: Option<XenbusState>,
    /// Whether a connection (mapped rings) exists.
    pub connected: bool,
    /// The device cannot be served (its `target=` was refused): it never offers itself.
    pub refused: bool,
    /// The store knows its disk (a network store has negotiated): only then connect.
    pub store_ready: bool,
    /// The connection has been idle for a while (no request taken or answered). A frontend
    /// that wrote Closed may still put requests on the ring: Linux blkfront (5.19+) closes
    /// with requests still queued and dispatches them when our responses restart its queue.
    /// We keep serving until idle, then disconnect (an unanswered request would hold its
    /// bio, and dom0's xenwatch thread in `del_gendisk`, forever).
    pub idle: bool,
}

/// What to do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write the probe keys (features, limits).
    Advertise,
    /// Read the frontend's keys, map its rings, bind its event channels; then, on
    /// success, write the connect keys and `state` = Connected in one transaction. The
    /// executor reports failure by setting `state` = Closing with an error node.
    Connect,
    /// Unmap everything of the frontend, close its event channels.
    Disconnect,
    SetState(XenbusState),
    /// Say why the device cannot be served (`hotplug-error`, `hotplug-status` = error).
    Refuse,
    /// Delete our backend directory (after a short grace, so the toolstack sees Closed
    /// first).
    RemoveDir,
}

/// Closed (again, if the toolstack overwrote our `state`), and the directory removed once the
/// toolstack set `online` = 0.
fn close(published: XenbusState, s: &Snapshot, mut a: Vec<Action>) -> (XenbusState, Vec<Action>) {
    if published != XenbusState::Closed || s.backend_in_store != Some(XenbusState::Closed) {
        a.push(Action::SetState(XenbusState::Closed));
    }
    if !s.online {
        a.push(Action::RemoveDir);
    }
    (XenbusState::Closed, a)
}

/// The next state we publish and the actions to get there.
pub fn step(published: XenbusState, s: &Snapshot) -> (XenbusState, Vec<Action>) {
    use XenbusState as X;
    let mut a = Vec::new();
    if s.refused {
        // Never InitWait: libxl's attach fails after its wait, as for a hotplug script that
        // failed; then `xl block-detach` (online = 0) ends it like any other device.
        if published != X::Closed {
            a.push(Action::Refuse);
        }
        return close(published, s, a);
    }
    let detaching = !s.online || (s.backend_in_store == Some(X::Closing) && published != X::Closing);
    let fe_done = matches!(s.frontend, None | Some(X::Closed) | Some(X::Unknown));
    if detaching || (!s.online && published == X::Closed) {
        if s.connected && !s.idle && s.frontend == Some(X::Closed) {
            // Closed, but maybe not done with the ring: serve until idle.
            if published != X::Closing {
                a.push(Action::SetState(X::Closing));
            }
            return (X::Closing, a);
        }
        if fe_done || (!s.connected && matches!(s.frontend, Some(X::Initialising) | Some(X::InitWait))) {
            if s.connected {
                a.push(Action::Disconnect);
            }
            return close(published, s, a);
        }
        // The frontend still runs: it sees our Closing and finishes its I/O first.
        if published != X::Closing {
            a.push(Action::SetState(X::Closing));
        }
        return (X::Closing, a);
    }
    match s.frontend {
        None | Some(X::Unknown) => {
            // Frontend gone: drop it, wait for the toolstack to set online = 0.
            if s.connected {
                a.push(Action::Disconnect);
            }
            if published != X::Closed {
                a.push(Action::SetState(X::Closed));
            }
            (X::Closed, a)
        }
        Some(X::Initialising) | Some(X::InitWait) => match published {
            X::InitWait => (X::InitWait, a),
            X::Initialising | X::Closed | X::Unknown => {
                a.push(Action::Advertise);
                a.push(Action::SetState(X::InitWait));
                (X::InitWait, a)
            }
            // The frontend started over without closing (a reboot of the guest kernel):
            // drop the old connection, offer a new one.
            _ => {
                if s.connected {
                    a.push(Action::Disconnect);
                }
                a.push(Action::Advertise);
                a.push(Action::SetState(X::InitWait));
                (X::InitWait, a)
            }
        },
        Some(X::Initialised) | Some(X::Connected) => match published {
            X::Connected if s.connected => (X::Connected, a),
            // The disk's size is not known yet: stay in InitWait; the device is looked at
            // again once the store is ready.
            X::InitWait if !s.store_ready => (X::InitWait, a),
            X::InitWait | X::Connected => {
                if s.connected {
                    a.push(Action::Disconnect);
                }
                a.push(Action::Connect);
                (X::Connected, a)
            }
            // Closing/Closed: a frontend must go back to Initialising to reconnect.
            other => (other, a),
        },
        Some(X::Closing) => {
            if s.connected {
                a.push(Action::Disconnect);
            }
            if published != X::Closing {
                a.push(Action::SetState(X::Closing));
            }
            (X::Closing, a)
        }
        Some(X::Closed) => {
            if s.connected && !s.idle {
                // Serve what it may still queue, then disconnect (see `Snapshot::idle`).
                if published != X::Closing {
                    a.push(Action::SetState(X::Closing));
                }
                return (X::Closing, a);
            }
            if s.connected {
                a.push(Action::Disconnect);
            }
            if published != X::Closed {
                a.push(Action::SetState(X::Closed));
            }
            (X::Closed, a)
        }
        Some(X::Reconfiguring) | Some(X::Reconfigured) => (published, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use XenbusState as X;

    fn snap(fe: Option<X>, online: bool, be: X, connected: bool) -> Snapshot {
        Snapshot {
            frontend: fe,
            online,
            backend_in_store: Some(be),
            connected,
            refused: false,
            store_ready: true,
            idle: true,
        }
    }

    #[test]
    fn a_closed_frontend_with_recent_io_is_served_until_idle() {
        let busy = |fe, online, be| Snapshot { idle: false, ..snap(Some(fe), online, be, true) };
        // libxl detaches, blkfront writes Closed at once, but I/O was just answered: stay
        // Closing, connected.
        let (s, a) = step(X::Connected, &busy(X::Closed, false, X::Closing));
        assert_eq!((s, a.as_slice()), (X::Closing, &[Action::SetState(X::Closing)][..]));
        assert_eq!(step(X::Closing, &busy(X::Closed, false, X::Closing)), (X::Closing, alloc::vec![]));
        // Idle: now disconnect, Closed, remove the directory.
        let (s, a) = step(X::Closing, &snap(Some(X::Closed), false, X::Closing, true));
        assert_eq!(
            (s, a.as_slice()),
            (X::Closed, &[Action::Disconnect, Action::SetState(X::Closed), Action::RemoveDir][..])
        );
        // The same without a detach (the frontend closed by itself).
        let (s, a) = step(X::Connected, &busy(X::Closed, true, X::Connected));
        assert_eq!((s, a.as_slice()), (X::Closing, &[Action::SetState(X::Closing)][..]));
        let (s, a) = step(X::Closing, &snap(Some(X::Closed), true, X::Closing, true));
        assert_eq!((s, a.as_slice()), (X::Closed, &[Action::Disconnect, Action::SetState(X::Closed)][..]));
        // A frontend whose domain is gone is dropped at once, busy or not.
        let gone = Snapshot { frontend: None, idle: false, ..snap(None, false, X::Closing, true) };
        let (_, a) = step(X::Closing, &gone);
        assert_eq!(a.first(), Some(&Action::Disconnect));
    }

    #[test]
    fn probe_then_connect_then_close_then_reconnect() {
        let (s, a) = step(X::Initialising, &snap(Some(X::Initialising), true, X::Initialising, false));
        assert_eq!((s, a.as_slice()), (X::InitWait, &[Action::Advertise, Action::SetState(X::InitWait)][..]));
        // libxl's frontend dir says Initialising until blkfront runs: nothing to do.
        assert_eq!(
            step(X::InitWait, &snap(Some(X::Initialising), true, X::InitWait, false)),
            (X::InitWait, alloc::vec![])
        );
        let (s, a) = step(X::InitWait, &snap(Some(X::Initialised), true, X::InitWait, false));
        assert_eq!((s, a.as_slice()), (X::Connected, &[Action::Connect][..]));
        assert_eq!(
            step(X::Connected, &snap(Some(X::Connected), true, X::Connected, true)),
            (X::Connected, alloc::vec![])
        );
        let (s, a) = step(X::Connected, &snap(Some(X::Closing), true, X::Connected, true));
        assert_eq!((s, a.as_slice()), (X::Closing, &[Action::Disconnect, Action::SetState(X::Closing)][..]));
        let (s, a) = step(X::Closing, &snap(Some(X::Closed), true, X::Closing, false));
        assert_eq!((s, a.as_slice()), (X::Closed, &[Action::SetState(X::Closed)][..]));
        // The frontend comes back (module reloaded): offer again.
        let (s, a) = step(X::Closed, &snap(Some(X::Initialising), true, X::Closed, false));
        assert_eq!((s, a.as_slice()), (X::InitWait, &[Action::Advertise, Action::SetState(X::InitWait)][..]));
    }

    #[test]
    fn libxl_detach_removes_the_directory_once_the_frontend_closed() {
        // libxl writes online=0 and our state=5; blkfront still Connected: go Closing only.
        let (s, a) = step(X::Connected, &snap(Some(X::Connected), false, X::Closing, true));
        assert_eq!((s, a.as_slice()), (X::Closing, &[Action::SetState(X::Closing)][..]));
        // blkfront closes: disconnect, Closed, remove our directory.
        let (s, a) = step(X::Closing, &snap(Some(X::Closed), false, X::Closing, true));
        assert_eq!(
            (s, a.as_slice()),
            (X::Closed, &[Action::Disconnect, Action::SetState(X::Closed), Action::RemoveDir][..])
        );
    }

    #[test]
    fn frontend_destroyed_mid_io() {
        let (s, a) = step(X::Connected, &snap(None, true, X::Connected, true));
        assert_eq!((s, a.as_slice()), (X::Closed, &[Action::Disconnect, Action::SetState(X::Closed)][..]));
        // Then the toolstack cleans up.
        let (s, a) = step(X::Closed, &snap(None, false, X::Closing, false));
        assert_eq!((s, a.as_slice()), (X::Closed, &[Action::SetState(X::Closed), Action::RemoveDir][..]));
    }

    #[test]
    fn refused_device_closes_once_and_goes_on_detach() {
        let refused = |fe, online, be| Snapshot { refused: true, ..snap(fe, online, be, false) };
        let (s, a) = step(X::Initialising, &refused(Some(X::Initialising), true, X::Initialising));
        assert_eq!((s, a.as_slice()), (X::Closed, &[Action::Refuse, Action::SetState(X::Closed)][..]));
        // Level-triggered: the same snapshot again does nothing.
        assert_eq!(step(X::Closed, &refused(Some(X::Initialising), true, X::Closed)), (X::Closed, alloc::vec![]));
        // The frontend cannot talk it into connecting.
        assert_eq!(step(X::Closed, &refused(Some(X::Initialised), true, X::Closed)), (X::Closed, alloc::vec![]));
        // libxl detaches: it wrote state 5; Closed again, then the directory goes.
        let (s, a) = step(X::Closed, &refused(Some(X::Initialising), false, X::Closing));
        assert_eq!((s, a.as_slice()), (X::Closed, &[Action::SetState(X::Closed), Action::RemoveDir][..]));
    }

    #[test]
    fn connect_waits_for_the_store() {
        let not_ready = |fe| Snapshot { store_ready: false, ..snap(Some(fe), true, X::InitWait, false) };
        assert_eq!(step(X::InitWait, &not_ready(X::Initialised)), (X::InitWait, alloc::vec![]));
        let ready = Snapshot { store_ready: true, ..not_ready(X::Initialised) };
        assert_eq!(step(X::InitWait, &ready), (X::Connected, alloc::vec![Action::Connect]));
    }

    #[test]
    fn frontend_restarts_without_closing() {
        let (s, a) = step(X::Connected, &snap(Some(X::Initialising), true, X::Connected, true));
        assert_eq!(
            (s, a.as_slice()),
            (X::InitWait, &[Action::Disconnect, Action::Advertise, Action::SetState(X::InitWait)][..])
        );
    }

    #[test]
    fn every_input_gives_an_answer_and_connect_only_from_initwait_or_connected() {
        let all = [
            X::Unknown,
            X::Initialising,
            X::InitWait,
            X::Initialised,
            X::Connected,
            X::Closing,
            X::Closed,
            X::Reconfiguring,
            X::Reconfigured,
        ];
        for &p in &all {
            for fe in all.iter().map(|&x| Some(x)).chain([None]) {
                for online in [true, false] {
                    for connected in [true, false] {
                        let (_, a) = step(p, &snap(fe, online, p, connected));
                        if a.contains(&Action::Connect) {
                            assert!(matches!(p, X::InitWait | X::Connected), "connect from {p:?}");
                            assert!(online);
                        }
                        if a.contains(&Action::RemoveDir) {
                            assert!(!online, "removed the directory while online");
                        }
                        if a.contains(&Action::Disconnect) {
                            assert!(connected, "disconnect without a connection");
                        }
                    }
                }
            }
        }
    }
}
