//! The consent speaker on a fake clock: mirror hellos, replays, skew, aliases, dual stack,
//! the previous version, withdrawals.

use super::*;

fn intent(key: &str) -> Intent {
    Intent {
        name: "marvelous".into(),
        via: Ipv4Addr::new(198, 51, 100, 2),
        ours: "10.1.0.0/24".parse().expect("net"),
        local_alias: None,
        theirs: "10.2.0.0/24".parse().expect("net"),
        via6: None,
        ours6: None,
        theirs6: None,
        key: Secret::new(key),
    }
}

fn hello_from_them(key: &str, time_ms: u64) -> Vec<u8> {
    let i = intent(key);
    Message {
        op: Op::Hello,
        time_ms,
        nonce: 7,
        from: i.theirs,
        to: i.ours,
        v6: None,
    }
    .encode(key.as_bytes())
}

/// A fixed wall clock: 2027-01-15 08:00:00 UTC.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn ms(t: SystemTime) -> u64 {
    unix_ms(t)
}

#[test]
fn consent_needs_a_valid_mirror_hello_and_fades() {
    let c = Consent::new(Arc::new(|| {}));
    c.set_intents_at(vec![intent("shared-secret-123456")], t0());
    let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
    let now = Instant::now();
    let wall = t0() + Duration::from_millis(300);
    // Forged: wrong key; wrong source; replay.
    assert!(!c.receive(
        src,
        &hello_from_them("guessed-key-000000", ms(wall)),
        now,
        wall
    ));
    assert!(!c.receive(
        "198.51.100.66:7781".parse().expect("addr"),
        &hello_from_them("shared-secret-123456", ms(wall)),
        now,
        wall
    ));
    assert!(c.consented().is_empty());
    let t = ms(wall);
    assert!(c.receive(src, &hello_from_them("shared-secret-123456", t), now, wall));
    assert_eq!(c.consented().len(), 1);
    assert_eq!(c.status()[0].since, 1_800_000_000);
    assert!(
        !c.receive(src, &hello_from_them("shared-secret-123456", t), now, wall),
        "replay"
    );
    // Silence: down.
    let mut g = c.lock();
    assert!(Consent::settle(
        &mut g,
        now + DEAD + Duration::from_millis(1),
        wall + DEAD + Duration::from_millis(1)
    ));
    assert_eq!(g.peers["marvelous"].state, "down");
}

/// A hello recorded before this process declared the peering (say, before a restart) is a
/// replay even inside the clock-skew window; the peer's next hello counts.
#[test]
fn a_hello_from_before_the_declaration_is_refused() {
    let c = Consent::new(Arc::new(|| {}));
    let captured = hello_from_them("shared-secret-123456", ms(t0()) - 5_000);
    c.set_intents_at(vec![intent("shared-secret-123456")], t0());
    let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
    let now = Instant::now();
    let wall = t0() + Duration::from_millis(2);
    assert!(
        !c.receive(src, &captured, now, wall),
        "replayed after a restart"
    );
    assert!(c.consented().is_empty());
    assert!(c.receive(
        src,
        &hello_from_them("shared-secret-123456", ms(wall)),
        now,
        wall
    ));
    assert_eq!(c.consented().len(), 1);
}

/// At a given time, a genuine hello stamped more than 30 s from our clock, in the past or in
/// the future, is refused even though it is newer than the declaration; one inside the
/// window counts.
#[test]
fn a_hello_outside_the_skew_window_is_refused() {
    let c = Consent::new(Arc::new(|| {}));
    c.set_intents_at(vec![intent("shared-secret-123456")], t0());
    let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
    let now = Instant::now();
    let wall = t0() + Duration::from_secs(60);
    let key = "shared-secret-123456";
    let stale = ms(wall) - MAX_SKEW_MS - 1;
    assert!(stale > ms(t0()), "newer than the declaration");
    assert!(
        !c.receive(src, &hello_from_them(key, stale), now, wall),
        "too old"
    );
    let future = ms(wall) + MAX_SKEW_MS + 1;
    assert!(
        !c.receive(src, &hello_from_them(key, future), now, wall),
        "from the future"
    );
    assert!(c.consented().is_empty());
    assert!(c.receive(
        src,
        &hello_from_them(key, ms(wall) - MAX_SKEW_MS),
        now,
        wall
    ));
    assert_eq!(c.consented().len(), 1);
}

/// Overlapping subnets: both sides are 10.1.0.0/24. Our hellos say we are our alias, and
/// only a hello that agrees on both aliases counts (not one naming the real subnets).
#[test]
fn aliased_hellos_carry_the_aliases_and_must_agree() {
    let c = Consent::new(Arc::new(|| {}));
    let key = "shared-secret-123456";
    let mut i = intent(key);
    i.local_alias = Some("10.201.0.0/24".parse().expect("net"));
    i.theirs = "10.202.0.0/24".parse().expect("net");
    c.set_intents_at(vec![i.clone()], t0());
    let wall = t0() + Duration::from_millis(300);
    let (out, _) = c.tick(7781, Instant::now(), wall);
    let m = Message::decode(&out[0].1, key.as_bytes()).expect("signed");
    assert_eq!((m.from, m.to), (i.local_alias.expect("alias"), i.theirs));
    let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
    let hello = |from: &str, to: &str, t: u64| {
        Message {
            op: Op::Hello,
            time_ms: t,
            nonce: 1,
            from: from.parse().expect("net"),
            to: to.parse().expect("net"),
            v6: None,
        }
        .encode(key.as_bytes())
    };
    let now = Instant::now();
    assert!(
        !c.receive(
            src,
            &hello("10.202.0.0/24", "10.1.0.0/24", ms(wall)),
            now,
            wall
        ),
        "the peer does not see us as our alias"
    );
    assert!(c.consented().is_empty());
    assert!(c.receive(
        src,
        &hello("10.202.0.0/24", "10.201.0.0/24", ms(wall) + 1),
        now,
        wall
    ));
    let st = &c.status()[0];
    assert_eq!(
        (st.subnet, st.local_subnet, st.local_alias),
        (i.theirs, i.ours, i.local_alias)
    );
}

/// Each beat says hello to every declared peering with the wall time it is given, and a
/// removed peering is told three times with a withdraw.
#[test]
fn a_tick_stamps_its_hellos_and_withdraws_with_the_time_given() {
    let c = Consent::new(Arc::new(|| {}));
    let key = "shared-secret-123456";
    c.set_intents_at(vec![intent(key)], t0());
    let wall = t0() + Duration::from_secs(1);
    let (out, changed) = c.tick(7781, Instant::now(), wall);
    assert!(!changed);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "198.51.100.2:7781".parse().expect("addr"));
    let m = Message::decode(&out[0].1, key.as_bytes()).expect("signed");
    assert_eq!((m.op, m.time_ms), (Op::Hello, ms(wall)));
    c.set_intents_at(Vec::new(), wall);
    for beat in 1..=4u64 {
        let wall = wall + Duration::from_millis(300 * beat);
        let (out, _) = c.tick(7781, Instant::now(), wall);
        if beat <= 3 {
            let m = Message::decode(&out[0].1, key.as_bytes()).expect("signed");
            assert_eq!((out.len(), m.op, m.time_ms), (1, Op::Withdraw, ms(wall)));
        } else {
            assert!(out.is_empty(), "withdrawn three times, then silent");
        }
    }
}

/// acme's dual-stack intent towards marvelous: 2001:db8:1::/64 here, 2001:db8:2::/64
/// there, marvelous's gateway 2001:db8:ff::2 on the IPv6 backbone.
fn dual(key: &str) -> Intent {
    Intent {
        via6: Some("2001:db8:ff::2".parse().expect("addr")),
        ours6: Some("2001:db8:1::/64".parse().expect("net")),
        theirs6: Some("2001:db8:2::/64".parse().expect("net")),
        ..intent(key)
    }
}

/// marvelous's hello to acme, with the IPv6 pair `v6` (from marvelous's view).
fn dual_hello(key: &str, time_ms: u64, v6: Option<(&str, &str)>) -> Vec<u8> {
    Message {
        op: Op::Hello,
        time_ms,
        nonce: 9,
        from: "10.2.0.0/24".parse().expect("net"),
        to: "10.1.0.0/24".parse().expect("net"),
        v6: v6.map(|(from, to)| Nets6 {
            from: from.parse().expect("net"),
            to: to.parse().expect("net"),
        }),
    }
    .encode(key.as_bytes())
}

/// A dual-stack peering's hellos are version 2 and go to the peer's IPv6 backbone address;
/// consent needs the mirror of both families, from the peer's IPv6 (or IPv4) address.
#[test]
fn a_dual_stack_peering_consents_over_ipv6_with_both_families() {
    let key = "shared-secret-123456";
    let c = Consent::new(Arc::new(|| {}));
    c.set_intents_at(vec![dual(key)], t0());
    let wall = t0() + Duration::from_millis(300);
    let (out, _) = c.tick(7781, Instant::now(), wall);
    assert_eq!(out[0].0, "[2001:db8:ff::2]:7781".parse().expect("addr"));
    let m = Message::decode(&out[0].1, key.as_bytes()).expect("signed");
    assert_eq!(m.version(), 2);
    assert_eq!(
        m.v6,
        Some(Nets6 {
            from: "2001:db8:1::/64".parse().expect("net"),
            to: "2001:db8:2::/64".parse().expect("net"),
        })
    );
    let src6: SocketAddr = "[2001:db8:ff::2]:7781".parse().expect("addr");
    let now = Instant::now();
    let t = ms(wall);
    // IPv4 only, the IPv6 pair of someone else, or from a stranger: not the mirror.
    assert!(!c.receive(src6, &dual_hello(key, t, None), now, wall));
    let other = Some(("2001:db8:3::/64", "2001:db8:1::/64"));
    assert!(!c.receive(src6, &dual_hello(key, t, other), now, wall));
    let mirror = Some(("2001:db8:2::/64", "2001:db8:1::/64"));
    let stranger: SocketAddr = "[2001:db8:ff::66]:7781".parse().expect("addr");
    assert!(!c.receive(stranger, &dual_hello(key, t, mirror), now, wall));
    assert!(!c.receive(
        src6,
        &dual_hello("guessed-key-000000", t, mirror),
        now,
        wall
    ));
    assert!(c.consented().is_empty());
    assert!(c.receive(src6, &dual_hello(key, t, mirror), now, wall));
    assert_eq!(c.consented().len(), 1);
    let st = &c.status()[0];
    assert_eq!(
        (st.subnet6, st.local_subnet6),
        (dual(key).theirs6, dual(key).ours6)
    );
    // Also from its IPv4 backbone address (IPv4-mapped, as a dual-stack socket says it).
    let c = Consent::new(Arc::new(|| {}));
    c.set_intents_at(vec![dual(key)], t0());
    let mapped: SocketAddr = "[::ffff:198.51.100.2]:7781".parse().expect("addr");
    assert!(c.receive(mapped, &dual_hello(key, t, mirror), now, wall));
    assert_eq!(c.consented().len(), 1);
}

/// Held to the previous version (`--speak-previous`), a dual-stack peering speaks version
/// 1 over IPv4 (the release before could not declare IPv6) and reads no version 2, so
/// its dual-stack mirror stays pending; an IPv4-only peering is unaffected.
#[test]
fn speaking_the_previous_version_keeps_ipv6_out_of_the_hellos() {
    let key = "shared-secret-123456";
    let c = Consent::new(Arc::new(|| {}));
    c.lock().newest = 1;
    c.set_intents_at(vec![dual(key)], t0());
    let wall = t0() + Duration::from_millis(300);
    let (out, _) = c.tick(7781, Instant::now(), wall);
    assert_eq!(out[0].0, "198.51.100.2:7781".parse().expect("addr"));
    let m = Message::decode(&out[0].1, key.as_bytes()).expect("signed");
    assert_eq!((m.version(), m.v6), (1, None));
    let mirror = Some(("2001:db8:2::/64", "2001:db8:1::/64"));
    let src6: SocketAddr = "[2001:db8:ff::2]:7781".parse().expect("addr");
    assert!(!c.receive(
        src6,
        &dual_hello(key, ms(wall), mirror),
        Instant::now(),
        wall
    ));
    assert!(c.consented().is_empty());
    // The IPv4-only peering of the release before: version 1 both ways, consent as ever.
    let c = Consent::new(Arc::new(|| {}));
    c.lock().newest = 1;
    c.set_intents_at(vec![intent(key)], t0());
    let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
    assert!(c.receive(src, &hello_from_them(key, ms(wall)), Instant::now(), wall));
    assert_eq!(c.consented().len(), 1);
}

/// Adding IPv6 to a peering changes what it declares: the old declaration is withdrawn
/// (the peer's consent to the IPv4-only peering does not carry over) and it starts over.
#[test]
fn adding_ipv6_to_a_peering_is_a_new_declaration() {
    let key = "shared-secret-123456";
    let c = Consent::new(Arc::new(|| {}));
    c.set_intents_at(vec![intent(key)], t0());
    let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
    let wall = t0() + Duration::from_millis(300);
    assert!(c.receive(src, &hello_from_them(key, ms(wall)), Instant::now(), wall));
    c.set_intents_at(vec![dual(key)], wall);
    assert!(c.consented().is_empty());
    let (out, _) = c.tick(7781, Instant::now(), wall + Duration::from_millis(300));
    let ops: Vec<Op> = out
        .iter()
        .map(|(_, b)| Message::decode(b, key.as_bytes()).expect("signed").op)
        .collect();
    assert_eq!(ops, [Op::Hello, Op::Withdraw]);
}
