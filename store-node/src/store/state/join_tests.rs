//! Tests of the merge rules. Property tests: for every type, the join of any states built
//! from the same writes is commutative, associative and idempotent, so any order and any
//! duplication of the same records gives the same state; the encoding round-trips every
//! state. Scenario tests: two nodes writing concurrently through [`apply`], exchanging deltas.

use bytes::Bytes;
use proptest::prelude::*;

use super::apply::{apply, Keep};
use super::encode::{decode, encode, state_hash};
use super::join::{join, merge};
use super::model::*;
use super::view;
use crate::store::op::{End, Op};
use crate::store::stamp::Stamp;
use crate::store::value::{Kind, Value};

fn stamp(hlc: u64, origin: u32) -> Stamp {
    Stamp { hlc, origin }
}

/// A write is identified by its stamp, so everything it wrote is a function of the stamp
/// (and of what it wrote to): generated states never disagree about one write's content.
fn written(stamp: Stamp, what: &str) -> Bytes {
    Bytes::from(format!("{what}@{}.{}", stamp.hlc, stamp.origin))
}

fn arb_stamp() -> impl Strategy<Value = Stamp> {
    (1u64..7, 1u32..4).prop_map(|(hlc, origin)| stamp(hlc, origin))
}

fn arb_register(name: &'static str) -> impl Strategy<Value = Register> {
    prop_oneof![
        1 => Just(Register::UNSET),
        3 => arb_stamp().prop_map(move |stamp| Register::value(stamp, written(stamp, name))),
        2 => (arb_stamp(), 0u64..3).prop_map(|(stamp, at)| Register::dead(stamp, at)),
    ]
}

fn arb_cell(name: &'static str) -> impl Strategy<Value = Cell> {
    (
        arb_register(name),
        proptest::collection::btree_map(1u32..4, 1u64..7, 0..3),
    )
        .prop_map(move |(register, counts)| Cell {
            register,
            counts: counts
                .into_iter()
                .map(|(origin, hlc)| Contribution {
                    stamp: stamp(hlc, origin),
                    total: written(stamp(hlc, origin), "n"),
                })
                .collect(),
        })
}

fn arb_member() -> impl Strategy<Value = Member> {
    let maxima = || {
        proptest::collection::btree_map(1u32..4, 1u64..7, 0..3)
            .prop_map(|map| map.into_iter().collect::<Vec<_>>())
    };
    (maxima(), maxima(), 0u64..3).prop_map(|(adds, removed, deleted_at)| Member {
        adds,
        removed,
        deleted_at,
    })
}

fn arb_element() -> impl Strategy<Value = Element> {
    (arb_stamp(), 0u32..2, arb_register("e")).prop_map(|(id_stamp, index, register)| {
        let id = ElementId {
            stamp: id_stamp,
            index,
        };
        // A position is chosen once, by the pushing write.
        let position = Bytes::from(vec![(id_stamp.hlc * 7 + u64::from(index)) as u8 % 5 + 1, 1]);
        let register = match register.slot {
            Slot::Value(_) => Register::value(register.stamp, written(register.stamp, "e")),
            _ => register,
        };
        Element {
            id,
            position,
            register,
        }
    })
}

fn arb_expiry() -> impl Strategy<Value = Expiry> {
    prop_oneof![
        Just(Expiry::UNSET),
        (
            arb_stamp(),
            proptest::option::of(1u64 << 40..(1u64 << 40) + 3)
        )
            .prop_map(|(stamp, at)| Expiry { at, stamp }),
    ]
}

const NAMES: [&str; 3] = ["a", "b", "c"];

fn arb_named<T: std::fmt::Debug + Clone>(
    item: impl Fn(&'static str) -> BoxedStrategy<T>,
) -> impl Strategy<Value = Vec<(Bytes, T)>> {
    (
        proptest::option::of(item(NAMES[0])),
        proptest::option::of(item(NAMES[1])),
        proptest::option::of(item(NAMES[2])),
    )
        .prop_map(|(a, b, c)| {
            [a, b, c]
                .into_iter()
                .zip(NAMES)
                .filter_map(|(item, name)| Some((Bytes::from_static(name.as_bytes()), item?)))
                .collect()
        })
}

fn arb_state(kind: Kind) -> BoxedStrategy<State> {
    let body: BoxedStrategy<Body> = match kind {
        Kind::String => arb_cell("s").prop_map(Body::String).boxed(),
        Kind::Hash => arb_named(|name| arb_cell(name).boxed())
            .prop_map(Body::Hash)
            .boxed(),
        Kind::ZSet => arb_named(|name| arb_cell(name).boxed())
            .prop_map(Body::ZSet)
            .boxed(),
        Kind::Set => arb_named(|_| arb_member().boxed())
            .prop_map(Body::Set)
            .boxed(),
        Kind::List => proptest::collection::btree_map(
            (arb_stamp(), 0u32..2).prop_map(|(stamp, index)| ElementId { stamp, index }),
            arb_element(),
            0..4,
        )
        .prop_map(|elements| {
            let mut elements: Vec<Element> = elements
                .into_iter()
                .map(|(id, mut element)| {
                    element.id = id;
                    element.position = Bytes::from(vec![
                        (id.stamp.hlc * 7 + u64::from(id.index)) as u8 % 5 + 1,
                        1,
                    ]);
                    element
                })
                .collect();
            elements.sort_by(|x, y| x.order().cmp(&y.order()));
            Body::List(elements)
        })
        .boxed(),
    };
    (arb_expiry(), body)
        .prop_map(|(expiry, body)| State { expiry, body })
        .boxed()
}

fn arb_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::String),
        Just(Kind::Hash),
        Just(Kind::Set),
        Just(Kind::ZSet),
        Just(Kind::List)
    ]
}

fn arb_states(count: usize) -> impl Strategy<Value = Vec<State>> {
    arb_kind().prop_flat_map(move |kind| proptest::collection::vec(arb_state(kind), count))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn join_is_commutative_associative_and_idempotent(states in arb_states(3)) {
        let (a, b, c) = (&states[0], &states[1], &states[2]);
        prop_assert_eq!(join(a, b), join(b, a));
        prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)));
        prop_assert_eq!(join(a, a), a.clone());
    }

    /// Any order and any duplication of the same records gives the same state (and hash).
    #[test]
    fn any_order_and_duplication_of_records_gives_one_state(
        states in arb_states(5),
        order in proptest::collection::vec(0usize..5, 0..10)
            .prop_map(|extra| [extra, (0..5).collect()].concat())
            .prop_shuffle(),
    ) {
        let fold = |indexes: &[usize]| {
            let mut held: Option<State> = None;
            for index in indexes {
                if let Some(next) = merge(held.as_ref(), &states[*index], false, 0, 0) {
                    held = Some(next);
                }
            }
            held
        };
        let forward = fold(&[0, 1, 2, 3, 4]);
        let shuffled = fold(&order);
        prop_assert_eq!(&forward, &shuffled);
        if let (Some(forward), Some(shuffled)) = (&forward, &shuffled) {
            prop_assert_eq!(state_hash(forward), state_hash(shuffled));
        }
    }

    #[test]
    fn encoding_round_trips_every_state(states in arb_states(1)) {
        let state = &states[0];
        let (header, payload) = encode(state, true);
        prop_assert_eq!(header.stamp, Some(state.max_stamp()));
        prop_assert_eq!(decode(&header, &payload), Ok(state.clone()));
    }

    /// Garbage never panics the decoder.
    #[test]
    fn decoding_garbage_never_panics(flags in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(header) = super::encode::Header::from_flags(flags & 0b1110_0111 | 0b1_0000, None, Some(stamp(99, 1))) {
            let _ = decode(&header, &payload);
        }
    }
}

/// One node for scenario tests: its state of one key, its origin and clock.
struct Node {
    state: Option<State>,
    origin: u32,
    clock: u64,
}

impl Node {
    fn new(origin: u32) -> Node {
        Node {
            state: None,
            origin,
            clock: 1 << 20,
        }
    }

    /// Applies `op` locally and returns its delta.
    fn write(&mut self, op: Op) -> State {
        self.clock += 1;
        let applied = apply(
            &op,
            self.state.take(),
            stamp(self.clock, self.origin),
            1_000,
            Keep::Deletions,
        );
        self.state = applied.state;
        applied.delta.expect("a delta")
    }

    fn receive(&mut self, delta: &State) {
        self.clock = self.clock.max(delta.max_stamp().hlc);
        if let Some(next) = merge(self.state.as_ref(), delta, false, 1_000, 0) {
            self.state = Some(next);
        }
    }

    fn value(&self) -> Option<Value> {
        self.state.as_ref().and_then(view::to_value)
    }
}

fn key() -> Bytes {
    Bytes::from_static(b"k")
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn exchange(left: &mut Node, right: &mut Node, from_left: &[State], from_right: &[State]) {
    for delta in from_right {
        left.receive(delta);
    }
    for delta in from_left {
        right.receive(delta);
    }
    assert_eq!(left.state, right.state);
}

#[test]
fn concurrent_fields_all_survive_and_one_field_is_last_writer_wins() {
    let (mut one, mut two) = (Node::new(1), Node::new(2));
    let left = vec![one.write(Op::HashSet {
        key: key(),
        fields: vec![(b("a"), b("1")), (b("x"), b("one"))],
    })];
    two.clock += 5;
    let right = vec![two.write(Op::HashSet {
        key: key(),
        fields: vec![(b("b"), b("2")), (b("x"), b("two"))],
    })];
    exchange(&mut one, &mut two, &left, &right);
    assert_eq!(
        one.value(),
        Some(Value::Hash(vec![
            (b("a"), b("1")),
            (b("b"), b("2")),
            (b("x"), b("two"))
        ]))
    );
}

#[test]
fn a_delete_removes_only_the_fields_it_saw() {
    let (mut one, mut two) = (Node::new(1), Node::new(2));
    let first = one.write(Op::HashSet {
        key: key(),
        fields: vec![(b("a"), b("1"))],
    });
    two.receive(&first);
    let deleted = one.write(Op::Delete { key: key() });
    let added = two.write(Op::HashSet {
        key: key(),
        fields: vec![(b("b"), b("2"))],
    });
    exchange(&mut one, &mut two, &[deleted], &[added]);
    assert_eq!(one.value(), Some(Value::Hash(vec![(b("b"), b("2"))])));
}

#[test]
fn concurrent_increments_all_count_and_a_set_resets_by_stamp() {
    let (mut one, mut two) = (Node::new(1), Node::new(2));
    let incr = |by: &str| Op::Increment {
        key: key(),
        field: None,
        by: b(by),
        result: b("ignored"),
    };
    let left: Vec<State> = (0..3).map(|_| one.write(incr("1"))).collect();
    let right: Vec<State> = (0..4).map(|_| two.write(incr("2"))).collect();
    exchange(&mut one, &mut two, &left, &right);
    assert_eq!(one.value(), Some(Value::String(b("11"))));
    // A SET seen by node 2 before its next increment: that increment counts on the new base.
    let set = one.write(Op::Put {
        key: key(),
        value: Value::String(b("100")),
        expire_at: None,
        keep_ttl: false,
    });
    let unseen = one.clone_for_test_increment();
    two.receive(&set);
    let seen = two.write(incr("5"));
    one.receive(&unseen);
    exchange(&mut one, &mut two, &[unseen], &[seen]);
    assert_eq!(one.value(), Some(Value::String(b("105"))));
}

impl Node {
    /// An increment made on a copy of this node that had not seen its last write: what a
    /// third node would send concurrently with it.
    fn clone_for_test_increment(&mut self) -> State {
        let mut other = Node::new(3);
        other.clock = self.clock - 1;
        other.write(Op::Increment {
            key: key(),
            field: None,
            by: b("7"),
            result: b("ignored"),
        })
    }
}

#[test]
fn sets_are_add_wins_and_a_removal_removes_only_what_it_saw() {
    let (mut one, mut two) = (Node::new(1), Node::new(2));
    let add = one.write(Op::SetAdd {
        key: key(),
        members: vec![b("m"), b("n")],
    });
    two.receive(&add);
    let removed = one.write(Op::SetRemove {
        key: key(),
        members: vec![b("m"), b("n")],
    });
    let readded = two.write(Op::SetAdd {
        key: key(),
        members: vec![b("m")],
    });
    exchange(&mut one, &mut two, &[removed], &[readded]);
    assert_eq!(one.value(), Some(Value::Set(vec![b("m")])));
}

#[test]
fn score_increments_from_both_nodes_count() {
    let (mut one, mut two) = (Node::new(1), Node::new(2));
    let add = one.write(Op::ZAdd {
        key: key(),
        members: vec![(b("m"), 1.0)],
    });
    two.receive(&add);
    let incr = |by| Op::ZIncrement {
        key: key(),
        member: b("m"),
        by,
        result: 0.0,
    };
    let left = vec![one.write(incr(2.0))];
    let right = vec![two.write(incr(3.5))];
    exchange(&mut one, &mut two, &left, &right);
    assert_eq!(one.value(), Some(Value::ZSet(vec![(b("m"), 6.5)])));
}

#[test]
fn concurrent_pushes_all_survive_in_one_order() {
    let (mut one, mut two) = (Node::new(1), Node::new(2));
    let first = one.write(Op::ListPush {
        key: key(),
        end: End::Right,
        values: vec![b("x")],
    });
    two.receive(&first);
    let left = vec![
        one.write(Op::ListPush {
            key: key(),
            end: End::Right,
            values: vec![b("a1"), b("a2")],
        }),
        one.write(Op::ListPush {
            key: key(),
            end: End::Left,
            values: vec![b("h1")],
        }),
    ];
    let right = vec![
        two.write(Op::ListPush {
            key: key(),
            end: End::Right,
            values: vec![b("b1")],
        }),
        two.write(Op::ListRemove {
            key: key(),
            indexes: vec![0],
        }),
    ];
    exchange(&mut one, &mut two, &left, &right);
    assert_eq!(
        one.value(),
        Some(Value::List(vec![b("h1"), b("a1"), b("b1"), b("a2")]))
    );
}

#[test]
fn of_two_types_the_greater_stamp_wins_whole() {
    let (mut one, mut two) = (Node::new(1), Node::new(2));
    let hash = one.write(Op::HashSet {
        key: key(),
        fields: vec![(b("f"), b("v"))],
    });
    two.clock += 10;
    let string = two.write(Op::Put {
        key: key(),
        value: Value::String(b("s")),
        expire_at: None,
        keep_ttl: false,
    });
    exchange(&mut one, &mut two, &[hash], &[string]);
    assert_eq!(one.value(), Some(Value::String(b("s"))));
}

#[test]
fn a_key_written_after_it_expired_never_shows_the_expired_fields() {
    let expired = State {
        expiry: Expiry {
            at: Some(500),
            stamp: stamp(100 << 16, 1),
        },
        body: Body::Hash(vec![(
            b("old"),
            Cell::of(Register::value(stamp(100 << 16, 1), b("1"))),
        )]),
    };
    // Written at 600 ms by a node that saw the key expire at 500: a new incarnation.
    let new = State {
        expiry: Expiry {
            at: None,
            stamp: stamp(600 << 16, 2),
        },
        body: Body::Hash(vec![(
            b("new"),
            Cell::of(Register::value(stamp(600 << 16, 2), b("2"))),
        )]),
    };
    // A node whose clock says 400 still holds the old one: it keeps the new one only.
    let kept = merge(Some(&expired), &new, false, 400, 0).expect("changed");
    assert_eq!(kept, new);
    assert_eq!(merge(Some(&new), &expired, false, 400, 0), None);
    // Written at 450 (the key still live for its writer): the fields merge.
    let mut live = new.clone();
    live.expiry.stamp = stamp(450 << 16, 2);
    let joined = merge(Some(&expired), &live, false, 400, 0).expect("changed");
    assert_eq!(view::hash_fields(&joined).len(), 2);
}

#[test]
fn unversioned_writes_fold_values_and_keep_no_deletions() {
    let mut state = None;
    for op in [
        Op::HashSet {
            key: key(),
            fields: vec![(b("a"), b("1")), (b("b"), b("2"))],
        },
        Op::Increment {
            key: key(),
            field: Some(b("a")),
            by: b("4"),
            result: b("5"),
        },
        Op::HashDelete {
            key: key(),
            fields: vec![b("b")],
        },
    ] {
        let applied = apply(&op, state.take(), Stamp::ZERO, 1_000, Keep::Values);
        assert_eq!(applied.delta, None);
        state = applied.state;
    }
    let state = state.expect("a hash");
    let (header, payload) = encode(&state, false);
    assert_eq!(header.stamp, None);
    assert_eq!(payload, b"\x01a\x015".to_vec());
    assert_eq!(
        view::to_value(&decode(&header, &payload).expect("decodes")),
        Some(Value::Hash(vec![(b("a"), b("5"))]))
    );
}
