//! Both ends of `io/ring.h` over the same pages: every request arrives once and in order,
//! every response answers one, through random interleavings and index wraps; each end
//! refuses the other's overflowing producer index; the notify predicates fire exactly when
//! the other side asked.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use proptest::prelude::*;
use xen_hv::fake::MemPage;
use xen_hv::Page;
use xen_ring::{BackRing, FrontRing, RingError};
use xen_sys_mini::io::ring::{SRING_REQ_EVENT, SRING_RSP_EVENT, SRING_RSP_PROD};

/// blkif's native slot (112 bytes: 32 slots in one page) and netif's RX slot (8 bytes: 256).
const SLOTS: [usize; 2] = [112, 8];

fn pair(pages: usize, slot: usize) -> (FrontRing<MemPage>, BackRing<MemPage>) {
    let p: Vec<MemPage> = (0..pages).map(|_| MemPage::new()).collect();
    let front = FrontRing::init(p.clone(), slot).map_err(|(_, e)| e).unwrap();
    let back = BackRing::attach(p, slot).map_err(|(_, e)| e).unwrap();
    (front, back)
}

fn entry(n: u32, slot: usize) -> Vec<u8> {
    (0..slot).map(|i| (n as usize * 31 + i) as u8).collect()
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// The frontend queues this many requests (as many as fit) and publishes them.
    Produce(u8),
    /// The backend takes up to this many of what it sees.
    Consume(u8),
    /// The backend answers up to this many of what it took, and publishes.
    Answer(u8),
    /// The frontend collects every response waiting.
    Collect,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u8..40).prop_map(Step::Produce),
        (1u8..40).prop_map(Step::Consume),
        (1u8..40).prop_map(Step::Answer),
        Just(Step::Collect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Requests and responses cross intact, once each and in order, over several wraps
    /// of both free-running indices, for one- and two-page rings of two slot sizes.
    #[test]
    fn requests_and_responses_cross_once_in_order(
        steps in proptest::collection::vec(step(), 1..300),
        pages in 1usize..=2,
        which in 0usize..2,
    ) {
        let slot = SLOTS[which];
        let (mut fe, mut be) = pair(pages, slot);
        let (mut sent, mut taken, mut answered, mut collected) = (0u32, 0u32, 0u32, 0u32);
        let mut be_taken: Vec<Vec<u8>> = Vec::new();
        for s in steps {
            match s {
                Step::Produce(n) => {
                    for _ in 0..n {
                        match fe.put_request(&entry(sent, slot)).unwrap() {
                            Some(idx) => { prop_assert_eq!(idx, sent); sent += 1; }
                            None => { prop_assert_eq!(fe.free(), 0); break; }
                        }
                    }
                    fe.push_requests_and_check_notify().unwrap();
                }
                Step::Consume(n) => {
                    let avail = be.unconsumed().unwrap();
                    prop_assert_eq!(avail, sent - taken);
                    for _ in 0..avail.min(u32::from(n)) {
                        let got: [u8; 112] = be.take().unwrap().unwrap();
                        prop_assert_eq!(&got[..slot], &entry(taken, slot)[..]);
                        prop_assert!(got[slot..].iter().all(|&b| b == 0));
                        be_taken.push(got[..slot].to_vec());
                        taken += 1;
                    }
                }
                Step::Answer(n) => {
                    for _ in 0..n {
                        let Some(req) = be_taken.first().cloned() else {
                            prop_assert!(!be.push_response(&[0; 8]).unwrap());
                            break;
                        };
                        // The response carries the request's first byte back (an id).
                        prop_assert!(be.push_response(&[req[0], !req[0]]).unwrap());
                        be_taken.remove(0);
                        answered += 1;
                    }
                    be.push_responses_and_check_notify().unwrap();
                }
                Step::Collect => {
                    let mut out = [0u8; 2];
                    while fe.take_response(&mut out).unwrap().is_some() {
                        prop_assert_eq!(out, [entry(collected, slot)[0], !entry(collected, slot)[0]]);
                        collected += 1;
                    }
                    prop_assert_eq!(collected, answered);
                }
            }
            prop_assert!(sent - collected <= fe.size());
            prop_assert_eq!(fe.outstanding(), sent - collected);
            prop_assert_eq!(be.outstanding(), taken - answered);
        }
    }

    /// A `req_prod` more than a ring ahead of the responses is refused, whatever else is
    /// in flight; up to a ring ahead is taken.
    #[test]
    fn req_prod_overflow_is_refused(ahead in 0u32..1000, answered in 0u32..32) {
        let (mut fe, mut be) = pair(1, 112);
        for i in 0..answered {
            fe.put_request(&entry(i, 112)).unwrap().unwrap();
            fe.push_requests_and_check_notify().unwrap();
            prop_assert_eq!(be.unconsumed().unwrap(), 1);
            let _: [u8; 112] = be.take().unwrap().unwrap();
            prop_assert!(be.push_response(&[0; 8]).unwrap());
            be.push_responses_and_check_notify().unwrap();
            prop_assert_eq!(fe.take_response(&mut [0; 8]).unwrap(), Some(i % 32));
        }
        fe.force_req_prod(answered.wrapping_add(ahead)).unwrap();
        let r = be.unconsumed();
        if ahead > 32 {
            prop_assert_eq!(r, Err(RingError::ReqProdOverflow { req_prod: answered + ahead, rsp_prod: answered }));
        } else {
            prop_assert_eq!(r, Ok(ahead));
        }
    }

    /// An `rsp_prod` claiming responses to requests never made is refused.
    #[test]
    fn rsp_prod_overflow_is_refused(in_flight in 0u32..=32, claim in 0u32..100) {
        let (mut fe, mut be) = pair(1, 112);
        for i in 0..in_flight {
            fe.put_request(&entry(i, 112)).unwrap().unwrap();
        }
        fe.push_requests_and_check_notify().unwrap();
        be.force_rsp_prod(claim).unwrap();
        let r = fe.unconsumed_responses();
        if claim > in_flight {
            prop_assert_eq!(r, Err(RingError::RspProdOverflow { rsp_prod: claim, req_prod: in_flight }));
            prop_assert!(fe.take_response(&mut [0; 8]).is_err());
        } else {
            prop_assert_eq!(r, Ok(claim));
        }
    }
}

#[test]
fn ring_sizes_follow_const_ring_size() {
    // __CONST_RING_SIZE(blkif, 4096) = 32; netif TX (12 bytes) and RX (8 bytes) = 256.
    assert_eq!(pair(1, 112).0.size(), 32);
    assert_eq!(pair(4, 112).0.size(), 128);
    assert_eq!(pair(1, 12).0.size(), 256);
    assert_eq!(pair(1, 8).1.size(), 256);
    let none = FrontRing::init(Vec::<MemPage>::new(), 112).map(|_| ()).map_err(|(p, e)| (p.len(), e));
    assert_eq!(none, Err((0, RingError::BadSize)));
    let none = BackRing::attach(vec![MemPage::new()], 0).map(|_| ()).map_err(|(p, e)| (p.len(), e));
    assert_eq!(none, Err((1, RingError::BadSize)));
}

#[test]
fn a_full_ring_takes_no_more_requests_and_a_back_end_no_more_than_the_ring() {
    let (mut fe, mut be) = pair(1, 112);
    for i in 0..32 {
        assert_eq!(fe.put_request(&entry(i, 112)).unwrap(), Some(i));
    }
    assert_eq!(fe.put_request(&entry(32, 112)).unwrap(), None);
    fe.push_requests_and_check_notify().unwrap();
    assert_eq!(be.unconsumed().unwrap(), 32);
    for _ in 0..32 {
        let _: [u8; 112] = be.take().unwrap().unwrap();
    }
    // RING_REQUEST_CONS_OVERFLOW: nothing beyond a ring of unanswered requests.
    assert_eq!(be.take::<112>().unwrap(), None);
    assert_eq!(be.unconsumed().unwrap(), 0);
    // A slot-sized response at most.
    assert_eq!(be.push_response(&[0; 113]), Err(RingError::Memory(xen_hv::MemError::OutOfBounds)));
}

#[test]
fn push_requests_notifies_only_when_the_back_end_asked() {
    let (mut fe, mut be) = pair(1, 112);
    // After SHARED_RING_INIT req_event is 1: the first request notifies.
    fe.put_request(&[1]).unwrap();
    assert!(fe.push_requests_and_check_notify().unwrap());
    // The backend has not re-armed (req_event still 1): the next ones do not.
    fe.put_request(&[2]).unwrap();
    assert!(!fe.push_requests_and_check_notify().unwrap());
    // The backend consumes both, finds nothing more, asks for the next one.
    assert_eq!(be.unconsumed().unwrap(), 2);
    let _: [u8; 112] = be.take().unwrap().unwrap();
    let _: [u8; 112] = be.take().unwrap().unwrap();
    assert!(!be.final_check_for_requests().unwrap());
    assert_eq!(fe.pages()[0].load_u32(SRING_REQ_EVENT).unwrap(), 3);
    fe.put_request(&[3]).unwrap();
    assert!(fe.push_requests_and_check_notify().unwrap());
    // FINAL_CHECK sees a request published before it looked again.
    assert!(be.final_check_for_requests().unwrap());
}

#[test]
fn push_responses_notifies_only_when_the_front_end_asked() {
    let (mut fe, mut be) = pair(1, 112);
    for i in 0..3u8 {
        fe.put_request(&[i]).unwrap();
    }
    fe.push_requests_and_check_notify().unwrap();
    assert_eq!(be.unconsumed().unwrap(), 3);
    for _ in 0..3 {
        let _: [u8; 112] = be.take().unwrap().unwrap();
    }
    // Nothing to publish: no notification.
    assert!(!be.push_responses_and_check_notify().unwrap());
    // rsp_event is 1 after init: the first response notifies, the second does not.
    be.push_response(&[0]).unwrap();
    assert!(be.push_responses_and_check_notify().unwrap());
    be.push_response(&[1]).unwrap();
    assert!(!be.push_responses_and_check_notify().unwrap());
    // The frontend takes both and re-arms for the third.
    assert!(fe.take_response(&mut [0; 8]).unwrap().is_some());
    assert!(fe.take_response(&mut [0; 8]).unwrap().is_some());
    assert!(!fe.final_check_for_responses().unwrap());
    assert_eq!(fe.pages()[0].load_u32(SRING_RSP_EVENT).unwrap(), 3);
    be.push_response(&[2]).unwrap();
    assert!(be.push_responses_and_check_notify().unwrap());
    assert_eq!(fe.pages()[0].load_u32(SRING_RSP_PROD).unwrap(), 3);
    assert!(fe.final_check_for_responses().unwrap());
}

#[test]
fn attach_starts_at_the_published_rsp_prod() {
    // BACK_RING_ATTACH on a ring that already carried 40 requests and responses (a
    // reconnect of the backend): new requests are counted from there.
    let p = vec![MemPage::new()];
    let mut fe = FrontRing::init(p.clone(), 112).map_err(|(_, e)| e).unwrap();
    {
        let mut be = BackRing::attach(p.clone(), 112).map_err(|(_, e)| e).unwrap();
        for i in 0..40u32 {
            fe.put_request(&entry(i, 112)).unwrap().unwrap();
            fe.push_requests_and_check_notify().unwrap();
            assert_eq!(be.unconsumed().unwrap(), 1);
            let _: [u8; 112] = be.take().unwrap().unwrap();
            be.push_response(&[0]).unwrap();
            be.push_responses_and_check_notify().unwrap();
            fe.take_response(&mut [0; 8]).unwrap().unwrap();
        }
    }
    let mut be = BackRing::attach(p, 112).map_err(|(_, e)| e).unwrap();
    assert_eq!(be.unconsumed().unwrap(), 0);
    fe.put_request(&entry(40, 112)).unwrap().unwrap();
    fe.push_requests_and_check_notify().unwrap();
    assert_eq!(be.unconsumed().unwrap(), 1);
    let got: [u8; 112] = be.take().unwrap().unwrap();
    assert_eq!(&got[..], &entry(40, 112)[..]);
}
