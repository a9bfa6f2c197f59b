//! The mdstat parser's cost: ns per parse of a real 2-array capture and of a
//! generated 64-array file. Plain std timing (no bench framework): batches of
//! parses, min/median/max ns per parse over the batches.
//!
//!     cargo bench --bench parse            # prints a table and one JSON line
//!
//! `MDGUARD_BENCH_JSON=path` also writes the JSON there (benches/run.sh does).

use std::hint::black_box;
use std::time::Instant;

/// A real capture (tests/fixtures/mdstat/vm-seed-recovering.txt): md1 waiting
/// (`resync=DELAYED`), md0 recovering with a progress line.
const TWO: &str = include_str!("../tests/fixtures/mdstat/vm-seed-recovering.txt");

/// 64 RAID1 arrays in the forms the kernel prints: clean with a bitmap,
/// recovering with a progress line, degraded with a faulty member, delayed.
fn sixty_four() -> String {
    let mut s = String::from(
        "Personalities : [raid1] [linear] [multipath] [raid0] [raid6] [raid5] [raid4] [raid10] \n",
    );
    for i in (0..64).rev() {
        let (a, b) = (2 * i, 2 * i + 1);
        match i % 4 {
            0 => s.push_str(&format!(
                "md{i} : active raid1 xvd{b}[1] xvd{a}[0]\n      1046528 blocks super 1.2 [2/2] [UU]\n      bitmap: 1/8 pages [4KB], 65536KB chunk\n\n"
            )),
            1 => s.push_str(&format!(
                "md{i} : active raid1 xvd{b}[2] xvd{a}[0]\n      1046528 blocks super 1.2 [2/1] [U_]\n      [=====>...............]  recovery = 27.4% (287104/1046528) finish=0.2min speed=47850K/sec\n      bitmap: 2/8 pages [8KB], 65536KB chunk\n\n"
            )),
            2 => s.push_str(&format!(
                "md{i} : active raid1 xvd{b}[1](F) xvd{a}[0]\n      1046528 blocks super 1.2 [2/1] [U_]\n      bitmap: 3/8 pages [12KB], 65536KB chunk\n\n"
            )),
            _ => s.push_str(&format!(
                "md{i} : active raid1 xvd{b}[2] xvd{a}[0]\n      1046528 blocks super 1.2 [2/1] [U_]\n      \tresync=DELAYED\n      \n"
            )),
        }
    }
    s.push_str("unused devices: <none>\n");
    s
}

struct Figure {
    name: &'static str,
    arrays: usize,
    bytes: usize,
    iters: u32,
    ns: Vec<f64>,
}

fn measure(name: &'static str, text: &str) -> Figure {
    let parsed = mdguard::md::mdstat::parse(text);
    let arrays = parsed.arrays.len();
    assert!(parsed.problems.is_empty(), "{name}: {:?}", parsed.problems);
    // size a batch to ~20 ms, then take 25 batches
    let mut iters = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(mdguard::md::mdstat::parse(black_box(text)));
        }
        if t.elapsed().as_millis() >= 20 || iters >= 1 << 24 {
            break;
        }
        iters *= 2;
    }
    let ns = (0..25)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(mdguard::md::mdstat::parse(black_box(text)));
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect::<Vec<_>>();
    Figure {
        name,
        arrays,
        bytes: text.len(),
        iters,
        ns,
    }
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (s[0], s[s.len() / 2], s[s.len() - 1])
}

fn main() {
    let sixty_four = sixty_four();
    let figs = [
        measure("2 arrays (real capture)", TWO),
        measure("64 arrays (generated)", &sixty_four),
    ];
    println!("| mdstat file | arrays | bytes | ns/parse min | median | max | batches x parses |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut json = Vec::new();
    for f in &figs {
        let (lo, med, hi) = stats(&f.ns);
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} x {} |",
            f.name,
            f.arrays,
            f.bytes,
            lo,
            med,
            hi,
            f.ns.len(),
            f.iters
        );
        json.push(format!(
            "{{\"file\":\"{}\",\"arrays\":{},\"bytes\":{},\"ns_per_parse\":{{\"min\":{lo:.1},\"median\":{med:.1},\"max\":{hi:.1}}},\"batches\":{},\"parses_per_batch\":{}}}",
            f.name,
            f.arrays,
            f.bytes,
            f.ns.len(),
            f.iters
        ));
    }
    let line = format!("[{}]", json.join(","));
    println!("{line}");
    if let Some(p) = std::env::var_os("MDGUARD_BENCH_JSON") {
        std::fs::write(p, line + "\n").expect("write MDGUARD_BENCH_JSON");
    }
}
