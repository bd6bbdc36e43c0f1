//! The shopping-cart story of the Dynamo paper (sections 4.4 and 6.3), played on one key's
//! dotted version vector set: two clients add items concurrently, the read shows both carts as
//! siblings, and a write with the read's context merges them. Then the sibling-explosion
//! experiment: two clients doing read-modify-write with stale contexts, 100 writes, with a DVV
//! set and with one plain vector clock per value.
//!
//! Run with `cargo run -p dynamo-vclock --example shopping_cart`.

use dynamo_vclock::{Actor, Context, DvvSet, VClock};

type Cart = Vec<&'static str>;

fn show(label: &str, cart: &DvvSet<Cart>) {
    let siblings: Vec<String> = cart.values().map(|items| format!("{items:?}")).collect();
    println!(
        "{label:<44} {} sibling(s): {}",
        cart.len(),
        siblings.join("  |  ")
    );
}

fn main() {
    let node_a = Actor::from("node-a");
    let node_b = Actor::from("node-b");
    println!("-- the shopping cart (paper 4.4) --");
    let mut cart = DvvSet::new(&node_a, vec!["book"], 1);
    show("alice adds a book (coordinated by node-a)", &cart);

    // Alice and Bob both read the cart and keep its context (an opaque token).
    let alice_token = Context::new(cart.context()).to_text();
    let bob_token = Context::new(cart.context()).to_text();
    println!("context token handed to clients: {alice_token}");

    // A partition: Alice's add lands on node-a, Bob's on node-b, each from the same context.
    let alice: Context = alice_token.parse().expect("a token we issued");
    let mut on_a = cart.clone();
    on_a.update(alice.clock(), &node_a, vec!["book", "pen"], 2);
    let bob: Context = bob_token.parse().expect("a token we issued");
    let mut on_b = cart.clone();
    on_b.update(bob.clock(), &node_b, vec!["book", "lamp"], 2);

    // The partition heals; anti-entropy or read repair joins the replicas.
    cart = on_a.sync(&on_b);
    show("after the partition heals, a read returns", &cart);

    // The client merges the siblings (union of items) and writes with the read's context.
    let mut merged: Cart = cart.values().flatten().copied().collect();
    merged.sort_unstable();
    merged.dedup();
    let context = cart.context();
    cart.update(&context, &node_a, merged, 3);
    show("a write with the read's context resolves them", &cart);

    println!();
    println!("-- sibling explosion: 2 clients, read-modify-write with stale contexts --");
    let writes = 100;
    let mut dvv: DvvSet<u32> = DvvSet::empty();
    let mut stale = [VClock::new(), VClock::new()];
    // Without dots: one clock for the whole object, advanced on the coordinator. A write whose
    // context does not descend that clock cannot tell which values it saw, so it must keep
    // them all as siblings.
    let mut object_clock = VClock::new();
    let mut plain: Vec<u32> = Vec::new();
    let mut stale_plain = [VClock::new(), VClock::new()];
    for write in 0..writes {
        let client = (write % 2) as usize;
        let now = u64::from(write);
        dvv.update(&stale[client], &node_a, write, now);
        stale[client] = dvv.context();

        if stale_plain[client].descends(&object_clock) {
            plain.clear();
        }
        plain.push(write);
        object_clock.merge(&stale_plain[client]);
        object_clock.increment(&node_a, now);
        stale_plain[client] = object_clock.clone();
    }
    println!(
        "{writes} writes with a DVV set:                  {} siblings",
        dvv.len()
    );
    println!(
        "{writes} writes with one vector clock per object: {} siblings",
        plain.len()
    );
}
