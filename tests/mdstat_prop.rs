//! Property tests: random valid arrays rendered to mdstat text parse back to the same
//! arrays; arbitrary and truncated text never panics.

use mdguard::md::mdstat::{
    parse, render, Mdstat, MdstatArray, MdstatBitmap, MdstatMember, MdstatSync, MdstatSyncKind,
    ReadOnly, RunState,
};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = MdstatSyncKind> {
    prop_oneof![
        Just(MdstatSyncKind::Recovery),
        Just(MdstatSyncKind::Resync),
        Just(MdstatSyncKind::Check),
        Just(MdstatSyncKind::Reshape),
    ]
}

fn sync() -> impl Strategy<Value = MdstatSync> {
    prop_oneof![
        (
            kind(),
            0u32..=1000,
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(0u32..100_000),
            proptest::option::of(0u64..10_000_000)
        )
            .prop_map(|(kind, tenths, a, b, fin, speed)| MdstatSync::Progress {
                kind,
                percent: tenths as f64 / 10.0,
                done_kb: a.min(b) as u64,
                total_kb: a.max(b) as u64,
                finish_min: fin.map(|f| f as f64 / 10.0),
                speed_kbps: speed,
            }),
        kind().prop_map(MdstatSync::Delayed),
        kind().prop_map(MdstatSync::Pending),
        kind().prop_map(MdstatSync::Remote),
    ]
}

fn member() -> impl Strategy<Value = MdstatMember> {
    (
        "[a-z]{2,4}[0-9]{0,2}(p[0-9])?",
        0u32..64,
        any::<[bool; 5]>(),
    )
        .prop_map(|(device, descriptor, f)| MdstatMember {
            device,
            descriptor,
            write_mostly: f[0],
            journal: f[1],
            faulty: f[2],
            spare: f[3],
            replacement: f[4],
        })
}

fn bitmap() -> impl Strategy<Value = MdstatBitmap> {
    (
        0u64..1000,
        1u64..1000,
        0u64..4000,
        prop_oneof![(1u64..1 << 20).prop_map(|k| k * 1024), 1u64..1023],
        proptest::option::of("/[a-z]{1,8}/[a-z0-9.]{1,8}"),
    )
        .prop_map(|(u, t, kb, chunk_bytes, file)| MdstatBitmap {
            pages_used: u.min(t),
            pages_total: t,
            kb,
            chunk_bytes,
            file,
        })
}

fn array(idx: usize) -> impl Strategy<Value = MdstatArray> {
    (
        prop_oneof![
            Just(RunState::Active),
            Just(RunState::Inactive),
            Just(RunState::Broken)
        ],
        proptest::option::of(prop_oneof![
            Just(ReadOnly::ReadOnly),
            Just(ReadOnly::AutoReadOnly)
        ]),
        proptest::option::of(prop_oneof![
            Just("raid1".to_string()),
            Just("raid0".to_string()),
            Just("raid5".to_string()),
            Just("raid6".to_string()),
            Just("raid10".to_string()),
            Just("linear".to_string()),
        ]),
        proptest::collection::vec(member(), 0..6),
        any::<u64>(),
        prop_oneof![
            Just("1.2"),
            Just("1.1"),
            Just("1.0"),
            Just("0.90"),
            Just("external:imsm"),
            Just("external:/md127/0"),
            Just("non-persistent"),
        ],
        proptest::option::of(prop_oneof![
            Just("512k chunks"),
            Just("level 5, 64k chunk, algorithm 2"),
            Just("64k rounding"),
            Just("512K chunks 2 near-copies"),
        ]),
        proptest::option::of(proptest::collection::vec(any::<bool>(), 1..8)),
        proptest::option::of(sync()),
        proptest::option::of(bitmap()),
    )
        .prop_map(
            move |(state, ro, level, members, blocks, meta, detail, slots, sync, bitmap)| {
                let ro = if state == RunState::Inactive {
                    None
                } else {
                    ro
                };
                let (raid_disks, working) = match &slots {
                    Some(s) => (
                        Some(s.len() as u32),
                        Some(s.iter().filter(|u| **u).count() as u32),
                    ),
                    None => (None, None),
                };
                MdstatArray {
                    name: format!("md{idx}"),
                    line: 0,
                    state,
                    read_only: ro,
                    // the kernel prints a personality only for a running array
                    level: if state == RunState::Inactive {
                        None
                    } else {
                        level
                    },
                    members,
                    blocks: Some(blocks),
                    metadata: Some(meta.to_string()),
                    detail: detail.map(String::from),
                    raid_disks,
                    working,
                    slots,
                    sync,
                    bitmap,
                }
            },
        )
}

fn mdstat() -> impl Strategy<Value = Mdstat> {
    (0usize..5)
        .prop_flat_map(|n| (0..n).map(array).collect::<Vec<_>>())
        .prop_map(|arrays| Mdstat {
            personalities: vec!["raid1".into(), "raid6".into()],
            arrays,
            unused_devices: vec![],
            problems: vec![],
        })
}

fn without_lines(mut m: Mdstat) -> Mdstat {
    for a in &mut m.arrays {
        a.line = 0;
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn render_then_parse_is_identity(m in mdstat()) {
        let text = render(&m);
        let back = parse(&text);
        prop_assert!(back.problems.is_empty(), "{:?}\n{}", back.problems, text);
        prop_assert_eq!(without_lines(back), m, "{}", text);
    }

    #[test]
    fn truncation_never_panics_and_keeps_complete_arrays(m in mdstat(), cut in any::<prop::sample::Index>()) {
        let text = render(&m);
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let back = parse(&text[..at]);
        // every array whose whole block fits before the cut is still read
        let whole = m.arrays.iter().filter(|a| {
            let header = format!("{} : ", a.name);
            let start = text.find(&header).unwrap();
            let end = text[start..].find("\n\n").map(|e| start + e).unwrap_or(text.len());
            end <= at
        }).count();
        prop_assert!(back.arrays.len() >= whole);
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        let _ = parse(&s);
    }

    #[test]
    fn mdstat_like_noise_never_panics(lines in proptest::collection::vec(
        prop_oneof![
            Just("Personalities : [raid1]".to_string()),
            "md[0-9] : (active|inactive|broken) [a-z0-9\\[\\]()]{0,30}",
            "      [0-9]{0,12} blocks[ a-z0-9.\\[\\]/_U:,]{0,40}",
            "      \\[[=>.]{0,20}\\]  (recovery|resync|check) = [0-9.%() /a-z=K]{0,40}",
            "      bitmap: [0-9/ a-zKB\\[\\],:]{0,40}",
            "\\PC{0,30}",
        ], 0..12)) {
        let text = lines.join("\n");
        let m = parse(&text);
        for p in &m.problems {
            prop_assert!(p.line >= 1 && p.line <= lines.len().max(1));
        }
    }
}
