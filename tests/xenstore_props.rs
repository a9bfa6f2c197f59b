//! Property tests for the xenstore codec and the schema's parsers: arbitrary
//! bytes never panic, encodings round-trip, published JSON stays < 1 KiB.
use mdguard::report::schema::{self, ArrayJson, ArraySummary, Health};
use mdguard::xenstore::wire::{self, Decoder, MsgType, Perm};
use proptest::prelude::*;

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        Just(Health::Ok),
        Just(Health::Recovering),
        Just(Health::Unknown),
        Just(Health::Degraded),
        Just(Health::Failed)
    ]
}

proptest! {
    #[test]
    fn decoder_never_panics_and_resyncs_only_on_valid_input(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..32)) {
        let mut d = Decoder::new();
        for c in &chunks {
            d.push(c);
            loop {
                match d.next_message() {
                    Ok(Some(m)) => prop_assert!(m.payload.len() <= wire::PAYLOAD_MAX),
                    Ok(None) => break,
                    Err(_) => { d.clear(); break }
                }
            }
        }
    }

    #[test]
    fn encode_decode_round_trip(ty in 0u32..32, req in any::<u32>(), tx in any::<u32>(),
                                payload in prop::collection::vec(any::<u8>(), 0..5000),
                                split in any::<prop::sample::Index>()) {
        let r = wire::encode(MsgType::from_u32(ty), req, tx, &payload);
        if payload.len() > wire::PAYLOAD_MAX {
            prop_assert!(r.is_err());
        } else {
            let bytes = r.unwrap();
            let at = split.index(bytes.len() + 1);
            let mut d = Decoder::new();
            d.push(&bytes[..at]);
            let early = d.next_message().unwrap();
            if at < bytes.len() { prop_assert!(early.is_none()); d.push(&bytes[at..]); }
            let m = match early { Some(m) => m, None => d.next_message().unwrap().unwrap() };
            prop_assert_eq!(m.ty.to_u32(), ty);
            prop_assert_eq!((m.req_id, m.tx_id), (req, tx));
            prop_assert_eq!(m.payload, payload);
        }
    }

    #[test]
    fn reply_parsers_never_panic(b in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = wire::split_strings(&b);
        let _ = wire::single_string(&b);
        let _ = wire::parse_perms(&b);
        let _ = wire::parse_watch_event(&b);
        let _ = wire::parse_directory_part(&b);
        let e = wire::parse_error(&b);
        prop_assert!(e.name().len() <= 64 * 3);
        let _ = schema::parse_budget_kbps(&b);
        let _ = schema::parse_token(&b);
        let _ = schema::parse_u64(&b);
        let _ = Health::parse(&b);
        let _ = ArrayJson::parse(&b);
        prop_assert!(mdguard::text::printable(&b, 40).len() <= 40 * 4 + 3);
    }

    #[test]
    fn perm_round_trip(domid in any::<u32>(), a in 0usize..4) {
        let access = [wire::Access::None, wire::Access::Read, wire::Access::Write, wire::Access::Both][a];
        let p = Perm::new(domid, access);
        prop_assert_eq!(Perm::parse(&p.to_wire()).unwrap(), p);
    }

    #[test]
    fn budget_accepts_exactly_canonical_numbers(n in 0u64..200_000_000) {
        let r = schema::parse_budget_kbps(n.to_string().as_bytes());
        match n {
            0 => prop_assert_eq!(r, Ok(None)),
            n if n <= schema::BUDGET_MAX_KBPS => prop_assert_eq!(r, Ok(Some(n))),
            _ => prop_assert!(r.is_err()),
        }
        let padded = format!("0{n}");
        prop_assert!(schema::parse_budget_kbps(padded.as_bytes()).is_err());
    }

    #[test]
    fn published_array_json_is_bounded_and_parses_back(
        h in health(), disks in 0u32..64, ins in 0u32..64,
        members in prop::collection::vec((".{0,40}", ".{0,80}"), 0..60),
        sync in prop::option::of((".{0,30}", any::<f32>())),
        level in ".{0,40}", flapping in any::<bool>(), stalled in any::<bool>(),
        refused in prop::collection::vec((".{0,40}", ".{0,80}"), 0..40))
    {
        let a = ArraySummary { name: "md0".into(), health: h, level, raid_disks: disks, in_sync: ins,
            members: members.clone(), sync, flapping, stalled, refused };
        let b = ArrayJson::from_summary(&a).to_bytes();
        prop_assert!(b.len() <= schema::ARRAY_JSON_MAX, "{} bytes", b.len());
        let back = ArrayJson::parse(&b).unwrap();
        prop_assert_eq!(back.health, h);
        prop_assert_eq!(back.members.len() + back.more_members as usize, members.len());
    }

    #[test]
    fn publisher_never_writes_twice_without_change(n in 1usize..5, t in 0u64..1_000_000) {
        let arrays: Vec<ArraySummary> = (0..n).map(|i| ArraySummary {
            name: format!("md{i}"), health: Health::Ok, level: "raid1".into(), raid_disks: 2, in_sync: 2,
            members: vec![], sync: None, flapping: false, stalled: false, refused: vec![] }).collect();
        let mut p = mdguard::report::publisher::Publisher::default();
        let plan = p.plan(&arrays, t);
        prop_assert_eq!(plan.ops.len(), n + 3);
        p.mark_written(&plan.ops, t);
        prop_assert!(p.plan(&arrays, t + 1_000_000).ops.is_empty());
    }
}
