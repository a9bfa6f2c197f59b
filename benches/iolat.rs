//! iolat DEV SECONDS [SEED [UNTIL_IDLE]]: the guest's own I/O latency, for the
//! benchmark.
//!
//! One thread, queue depth 1: random 4 KiB O_DIRECT reads and writes (half
//! each, aligned, anywhere on DEV) for SECONDS, or until the file UNTIL_IDLE
//! (an md `sync_action`) reads `idle`, then one line per kind:
//! `read ops=N p50_us=.. p99_us=.. max_us=..` (and `write ...`). Writes put
//! pseudo-random bytes on DEV: point it only at a scratch array.
//!
//! Built as an example (`cargo build --release --example iolat`) so it is never
//! installed with mdguard; benches/run.sh puts it into the VM guest.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

const BS: usize = 4096;

/// xorshift64*: enough randomness for offsets and payloads.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A 4 KiB buffer aligned for O_DIRECT.
struct Block(*mut u8);
impl Block {
    fn new() -> Block {
        let l = std::alloc::Layout::from_size_align(BS, BS).unwrap();
        // SAFETY: non-zero size; freed in Drop with the same layout
        let p = unsafe { std::alloc::alloc_zeroed(l) };
        assert!(!p.is_null(), "out of memory");
        Block(p)
    }
    fn buf(&mut self) -> &mut [u8] {
        // SAFETY: BS bytes owned by self, exclusively borrowed
        unsafe { std::slice::from_raw_parts_mut(self.0, BS) }
    }
}
impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with this layout
        unsafe { std::alloc::dealloc(self.0, std::alloc::Layout::from_size_align(BS, BS).unwrap()) }
    }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: iolat DEV SECONDS [SEED [UNTIL_IDLE]]");
        std::process::exit(2);
    }
    let secs: f64 = args[2].parse().expect("SECONDS");
    let seed: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&args[1])
        .unwrap_or_else(|e| panic!("{}: {e}", args[1]));
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let size = if size > 0 {
        size
    } else {
        // a block device: its size is where seeking to the end lands
        use std::io::Seek;
        (&f).seek(std::io::SeekFrom::End(0)).expect("device size")
    };
    let blocks = size / BS as u64;
    assert!(blocks > 0, "{}: empty", args[1]);
    let mut rng = Rng(seed | 1);
    let mut blk = Block::new();
    let (mut reads, mut writes) = (Vec::new(), Vec::new());
    let mut errors = 0u64;
    let until_idle = args.get(4).cloned();
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(secs);
    let mut checked = started;
    while Instant::now() < end {
        if let Some(p) = &until_idle {
            if checked.elapsed() >= Duration::from_millis(100) {
                checked = Instant::now();
                if std::fs::read_to_string(p).is_ok_and(|s| s.trim() == "idle") {
                    break;
                }
            }
        }
        let off = (rng.next() % blocks) * BS as u64;
        let write = rng.next() & 1 == 1;
        if write {
            let v = rng.next();
            for (i, b) in blk.buf().iter_mut().enumerate() {
                *b = (v >> (8 * (i % 8))) as u8;
            }
        }
        let t = Instant::now();
        let r = if write {
            f.write_all_at(blk.buf(), off)
        } else {
            f.read_exact_at(blk.buf(), off)
        };
        let us = t.elapsed().as_micros() as u64;
        match r {
            Ok(()) if write => writes.push(us),
            Ok(()) => reads.push(us),
            Err(_) => errors += 1,
        }
    }
    println!("seconds={:.2}", started.elapsed().as_secs_f64());
    for (name, v) in [("read", &mut reads), ("write", &mut writes)] {
        v.sort_unstable();
        println!(
            "{name} ops={} p50_us={} p99_us={} max_us={} errors={errors}",
            v.len(),
            pct(v, 0.50),
            pct(v, 0.99),
            v.last().copied().unwrap_or(0)
        );
    }
}
