//! Resolvers are joins (issue 14): commutative, associative and idempotent, so replicas that
//! receive the same versions in any order resolve to the same value; plus a table of what each
//! resolver makes of concurrent versions, the cart's anomaly (paper 4.4) among them.

use dynamo_quorum::{Object, Value};
use dynamo_resolve::{
    Cart, ItemSet, Resolution, Resolver, Version, resolve, resolve_versions, validate,
};
use dynamo_vclock::{Actor, VClock};
use proptest::prelude::*;

/// A cart operation: add an item under a tag, or remove an item.
#[derive(Clone, Debug)]
enum Op {
    Add(u8, u64),
    Remove(u8),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            (0u8..6, 0u64..40).prop_map(|(i, t)| Op::Add(i, t)),
            (0u8..6).prop_map(Op::Remove),
        ],
        0..12,
    )
}

fn cart_of(ops: &[Op]) -> Cart {
    let mut cart = Cart::default();
    for op in ops {
        match op {
            Op::Add(item, tag) => {
                cart.add(&[*item], *tag);
            }
            Op::Remove(item) => {
                cart.remove(&[*item]);
            }
        }
    }
    cart
}

/// One sibling: (actor, counter, timestamp, bytes or a delete).
type Row = (String, u64, Option<u64>, Option<Vec<u8>>);

/// A check of one resolution.
type Check = fn(&Resolution);

/// Versions from rows.
fn versions_of(rows: &[Row]) -> Vec<Version<'_>> {
    rows.iter()
        .map(|(actor, counter, timestamp, bytes)| Version {
            timestamp: *timestamp,
            actor,
            counter: *counter,
            bytes: bytes.as_deref(),
        })
        .collect()
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    let value = prop_oneof![
        Just(None),
        (-50i64..50).prop_map(|n| Some(n.to_string().into_bytes())),
        ops().prop_map(|ops| Some(cart_of(&ops).encode())),
        prop::collection::btree_set(prop::collection::vec(0u8..4, 0..3), 0..4)
            .prop_map(|s| Some(ItemSet(s).encode())),
        prop::collection::vec(any::<u8>(), 0..6).prop_map(Some),
    ];
    prop::collection::vec(
        (0usize..4, 1u64..5, prop::option::of(0u64..20), value),
        1..6,
    )
    .prop_map(|rows| {
        // A dot names one version: keep the first row of each (actor, counter).
        let mut seen = std::collections::BTreeSet::new();
        rows.into_iter()
            .filter(|(a, c, _, _)| seen.insert((*a, *c)))
            .map(|(a, c, t, v)| (format!("n{a}#1"), c, t, v))
            .collect()
    })
}

proptest! {
    /// Cart::join is a join: commutative, associative, idempotent.
    #[test]
    fn cart_join_laws(a in ops(), b in ops(), c in ops()) {
        let (a, b, c) = (cart_of(&a), cart_of(&b), cart_of(&c));
        prop_assert_eq!(a.join(&b), b.join(&a));
        prop_assert_eq!(a.join(&b).join(&c), a.join(&b.join(&c)));
        prop_assert_eq!(a.join(&a), a.clone());
        prop_assert_eq!(Cart::decode(&a.encode()).ok(), Some(a));
    }

    /// A remove stays removed: whatever a concurrent version holds, an item this version removed
    /// is in the join only through an add the remove did not see.
    #[test]
    fn a_removed_add_never_comes_back(before in ops(), item in 0u8..6) {
        let base = cart_of(&before);
        let mut removed = base.clone();
        removed.remove(&[item]);
        let concurrent = base.clone(); // the old version, never told of the remove
        let joined = removed.join(&concurrent);
        prop_assert!(!joined.contains(&[item]));
        // Adds made later elsewhere (fresh tags) do bring it back: add wins.
        let mut later = concurrent.clone();
        let fresh = 1_000;
        later.add(&[item], fresh);
        prop_assert!(removed.join(&later).contains(&[item]));
    }

    /// Every resolver gives the same answer whatever order the siblings come in (what replicas
    /// that saw versions in different orders compute).
    #[test]
    fn resolution_does_not_depend_on_order(rows in rows(), seed in any::<u64>()) {
        let mut shuffled = rows.clone();
        let mut state = seed;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        for resolver in Resolver::ALL {
            prop_assert_eq!(
                resolve_versions(resolver, &versions_of(&rows)),
                resolve_versions(resolver, &versions_of(&shuffled))
            );
        }
    }

    /// Resolving is idempotent: the resolved value, written back as one version, resolves to
    /// itself.
    #[test]
    fn resolving_a_resolution_changes_nothing(rows in rows()) {
        for resolver in [Resolver::Max, Resolver::Union, Resolver::Cart, Resolver::Lww] {
            let Some(Resolution { value: Some(value), .. }) =
                resolve_versions(resolver, &versions_of(&rows))
            else {
                continue;
            };
            let again = vec![("n9#1".to_string(), 1, Some(99), Some(value.clone()))];
            let resolved = resolve_versions(resolver, &versions_of(&again));
            prop_assert_eq!(resolved.and_then(|r| r.value), Some(value));
        }
    }
}

/// Concurrent versions of one key: written by different coordinators with no context, each at
/// its time.
fn concurrent(values: &[(&str, u64, Value)]) -> Object {
    let mut object = Object::empty();
    for (actor, at, value) in values {
        object.update(&VClock::default(), &Actor::new(*actor), value.clone(), *at);
    }
    object
}

fn data(bytes: &[u8]) -> Value {
    Value::Data(bytes.to_vec())
}

fn cart(build: impl FnOnce(&mut Cart)) -> Value {
    let mut cart = Cart::default();
    build(&mut cart);
    Value::Data(cart.encode())
}

/// What each resolver makes of concurrent versions (paper 4.4 and 6.1: the application picks).
#[test]
fn each_resolver_resolves_concurrent_versions() {
    let mut kibble = Cart::default();
    kibble.add(b"kibble", 1);
    let removed = {
        let mut c = kibble.clone();
        c.remove(b"kibble");
        Value::Data(c.encode())
    };
    let stale_plus_toy = {
        let mut c = kibble.clone();
        c.add(b"toy", 2);
        Value::Data(c.encode())
    };
    let re_added = {
        let mut c = Cart::default();
        c.add(b"kibble", 1);
        c.remove(b"kibble");
        c.add(b"kibble", 3);
        c
    };
    let cases: Vec<(&str, Resolver, Object, Check)> = vec![
        (
            "siblings: nothing resolved",
            Resolver::Siblings,
            concurrent(&[("a#1", 1, data(b"x")), ("b#1", 2, data(b"y"))]),
            |_| unreachable!(),
        ),
        (
            "lww: the newest timestamp wins, the other is listed",
            Resolver::Lww,
            concurrent(&[("a#1", 5, data(b"old")), ("b#1", 9, data(b"new"))]),
            |r| {
                assert_eq!(r.value.as_deref(), Some(&b"new"[..]));
                assert_eq!(r.discarded, vec![b"old".to_vec()]);
                assert_eq!(r.merged, 2);
            },
        ),
        (
            "lww: equal timestamps break by coordinator",
            Resolver::Lww,
            concurrent(&[("a#1", 5, data(b"from a")), ("b#1", 5, data(b"from b"))]),
            |r| assert_eq!(r.value.as_deref(), Some(&b"from b"[..])),
        ),
        (
            "lww: a newer delete wins",
            Resolver::Lww,
            concurrent(&[("a#1", 5, data(b"x")), ("b#1", 9, Value::Tombstone)]),
            |r| {
                assert_eq!(r.value, None);
                assert!(
                    r.notes.iter().any(|n| n.contains("delete")),
                    "{:?}",
                    r.notes
                );
            },
        ),
        (
            "max: the largest integer, unreadable versions left out",
            Resolver::Max,
            concurrent(&[
                ("a#1", 1, data(b"17")),
                ("b#1", 2, data(b" 42\n")),
                ("c#1", 3, data(b"lots")),
            ]),
            |r| {
                assert_eq!(r.value.as_deref(), Some(&b"42"[..]));
                assert_eq!(r.discarded, vec![b"lots".to_vec()]);
            },
        ),
        (
            "union: the paper's cart brings a removed item back",
            Resolver::Union,
            concurrent(&[
                ("a#1", 1, Value::Data(ItemSet::from([]).encode())),
                (
                    "b#1",
                    2,
                    Value::Data(ItemSet::from(["kibble", "toy"]).encode()),
                ),
            ]),
            |r| {
                let items = ItemSet::decode(r.value.as_deref().unwrap()).unwrap();
                assert_eq!(items, ItemSet::from(["kibble", "toy"]));
            },
        ),
        (
            "cart: a removed item stays removed",
            Resolver::Cart,
            concurrent(&[("a#1", 1, removed.clone()), ("b#1", 2, stale_plus_toy)]),
            |r| {
                let cart = Cart::decode(r.value.as_deref().unwrap()).unwrap();
                assert_eq!(cart.items().collect::<Vec<_>>(), vec![&b"toy"[..]]);
                assert_eq!(r.merged, 2);
                assert!(r.notes.is_empty(), "{:?}", r.notes);
            },
        ),
        (
            "cart: an add concurrent with a remove wins and is flagged",
            Resolver::Cart,
            concurrent(&[
                ("a#1", 1, removed),
                ("b#1", 2, Value::Data(re_added.encode())),
            ]),
            |r| {
                let cart = Cart::decode(r.value.as_deref().unwrap()).unwrap();
                assert!(cart.contains(b"kibble"));
                assert!(
                    r.notes
                        .contains(&"a concurrent remove of kibble was overridden by an add".into()),
                    "{:?}",
                    r.notes
                );
            },
        ),
        (
            "cart: a concurrent delete of the key keeps the adds",
            Resolver::Cart,
            concurrent(&[
                (
                    "a#1",
                    1,
                    cart(|c| {
                        c.add(b"pen", 7);
                    }),
                ),
                ("b#1", 2, Value::Tombstone),
            ]),
            |r| {
                let cart = Cart::decode(r.value.as_deref().unwrap()).unwrap();
                assert!(cart.contains(b"pen"));
            },
        ),
    ];
    for (name, resolver, object, check) in cases {
        match resolve(resolver, &object) {
            None => assert_eq!(resolver, Resolver::Siblings, "{name}: no resolution"),
            Some(resolution) => {
                assert_eq!(resolution.resolver, resolver, "{name}");
                check(&resolution);
            }
        }
    }
}

/// A bucket refuses what it could not resolve, with an error that says what it wants.
#[test]
fn structured_buckets_check_their_format() {
    let cases: &[(Resolver, &[u8], bool)] = &[
        (Resolver::Siblings, b"\xff anything", true),
        (Resolver::Lww, b"", true),
        (Resolver::Max, b"-12", true),
        (Resolver::Max, b"12.5", false),
        (Resolver::Union, &[1, 1, b'a'], true),
        (Resolver::Union, b"not a set", false),
        (Resolver::Cart, &[0, 0], true),
        (Resolver::Cart, b"\xff\xff\xff", false),
    ];
    for (resolver, value, ok) in cases {
        let result = validate(*resolver, value);
        assert_eq!(result.is_ok(), *ok, "{resolver} {value:?}: {result:?}");
        if let Err(error) = result {
            assert!(error.to_string().contains(resolver.name()), "{error}");
        }
    }
    for resolver in Resolver::ALL {
        assert_eq!(resolver.name().parse::<Resolver>(), Ok(resolver));
    }
    assert!("crdt".parse::<Resolver>().is_err());
}
