//! The frontend's xenbus state machine as a pure function of what it last published and
//! what xenstore says now (level-triggered: coalesced or repeated watch events cannot leave
//! it behind). It follows Linux netfront (`netback_changed`): connect when the backend
//! offers itself (InitWait, or Connected after a restart we missed), go Closed when the
//! backend closes, and connect afresh when a restarted backend is back in InitWait.
use alloc::vec::Vec;

use xen_sys_mini::io::xenbus::XenbusState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The backend's `state`; `None` if its directory is gone or the value is not a state.
    pub backend: Option<XenbusState>,
    /// Whether rings and buffers are set up.
    pub connected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Allocate and grant the rings and buffers, allocate the event channel, write our keys
    /// and `state` = Connected in one transaction.
    Connect,
    /// End access to every grant, close the event channel.
    Disconnect,
    SetState(XenbusState),
}

pub fn step(ours: XenbusState, s: &Snapshot) -> (XenbusState, Vec<Action>) {
    use XenbusState as X;
    let mut a = Vec::new();
    match s.backend {
        Some(X::InitWait) => {
            if s.connected && ours == X::Connected {
                // InitWait again while we were connected: the backend restarted.
                a.push(Action::Disconnect);
            } else if s.connected {
                return (ours, a);
            }
            a.push(Action::Connect);
            (X::Connected, a)
        }
        Some(X::Connected) if !s.connected => {
            a.push(Action::Connect);
            (X::Connected, a)
        }
        Some(X::Closing) | Some(X::Closed) | None | Some(X::Unknown) => {
            if s.connected {
                a.push(Action::Disconnect);
            }
            if ours != X::Closed && ours != X::Initialising {
                a.push(Action::SetState(X::Closed));
                return (X::Closed, a);
            }
            (ours, a)
        }
        _ => (ours, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use XenbusState as X;

    fn snap(backend: Option<X>, connected: bool) -> Snapshot {
        Snapshot { backend, connected }
    }

    #[test]
    fn connect_close_restart() {
        assert_eq!(step(X::Initialising, &snap(Some(X::Initialising), false)), (X::Initialising, alloc::vec![]));
        assert_eq!(
            step(X::Initialising, &snap(Some(X::InitWait), false)),
            (X::Connected, alloc::vec![Action::Connect])
        );
        // Level-triggered: the same snapshot again changes nothing.
        assert_eq!(step(X::Connected, &snap(Some(X::Connected), true)), (X::Connected, alloc::vec![]));
        assert_eq!(step(X::Connected, &snap(Some(X::InitWait), true)).1, [Action::Disconnect, Action::Connect]);
        assert_eq!(
            step(X::Connected, &snap(Some(X::Closing), true)),
            (X::Closed, alloc::vec![Action::Disconnect, Action::SetState(X::Closed)])
        );
        assert_eq!(step(X::Closed, &snap(Some(X::Closed), false)), (X::Closed, alloc::vec![]));
        assert_eq!(step(X::Closed, &snap(None, false)), (X::Closed, alloc::vec![]));
        // The backend comes back (netback reloaded, dom0 toolstack re-probed).
        assert_eq!(step(X::Closed, &snap(Some(X::InitWait), false)), (X::Connected, alloc::vec![Action::Connect]));
    }

    #[test]
    fn disconnect_only_when_connected_and_connect_only_when_offered() {
        let all = [X::Unknown, X::Initialising, X::InitWait, X::Initialised, X::Connected, X::Closing, X::Closed];
        for &ours in &all {
            for be in all.iter().map(|&x| Some(x)).chain([None]) {
                for connected in [false, true] {
                    let (_, a) = step(ours, &snap(be, connected));
                    if a.contains(&Action::Disconnect) {
                        assert!(connected);
                    }
                    if a.contains(&Action::Connect) {
                        assert!(matches!(be, Some(X::InitWait) | Some(X::Connected)), "{ours:?} {be:?}");
                    }
                }
            }
        }
    }
}
