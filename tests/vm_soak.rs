//! The soak (issue 13): one VM lab, many fail/recover cycles, every byte checked.
//!
//! md0 is a RAID1 over two nbd legs (bitmap, `nbd-client -t 5`) with `mdguard
//! run` healing it. A writer in the guest keeps writing 64 KiB blocks to the
//! first MiBs of md0; each 512-byte sector of a block says which block, which
//! generation (a counter over all writes) and which sector it is, so any block
//! can be checked later. Each cycle picks, from a seeded RNG, one fault and the
//! leg it hits (never both): the server killed then restarted, frozen (the
//! `-t 5` timeout fails the leg) then resumed, killed again when the recovery is
//! near its end, mdguard killed with -9 mid-recovery and restarted, or the guest
//! powered off mid-recovery and booted again. After each heal the writer pauses
//! and every block is read back through md0 and below md on the leg that came
//! back; every K cycles and at the end md's `check` compares the legs.
//!
//! A wrong byte never stops the run: it is recorded, and the test fails at the
//! end. Results: `target/soak/results.json` (`MDGUARD_SOAK_OUT`), each cycle
//! also as it ends in `results.cycles.jsonl`, the agent's log in `results.agent.log`.
//!
//!   scripts/soak.sh [CYCLES]       # the long run (provisions, builds)
//!   cargo test --test vm_soak -- --ignored --nocapture   # 3 cycles (the CI smoke)
//!
//! Env: MDGUARD_SOAK_CYCLES (3), MDGUARD_SOAK_SEED (from the clock; printed),
//! MDGUARD_SOAK_CHECK_EVERY (5), MDGUARD_SOAK_CYCLE_TIMEOUT_S (300),
//! MDGUARD_SOAK_REGION_MIB (8), MDGUARD_SOAK_LEG_MIB (32), MDGUARD_SOAK_MAX_KBPS
//! (4000: mdguard's resync ceiling, so a recovery lasts long enough to be hit),
//! MDGUARD_SOAK_FAULTS (comma list of the fault names below; default all),
//! MDGUARD_SOAK_OUT, MDGUARD_SOAK_NO_ARM_WAIT=1 (do not wait until mdguard has
//! md0's sysfs files open after a start: see `wait_armed`).
//!
//! A seed replays the sequence of faults and legs, not the timing: the writer's
//! pace and when md notices a failure depend on the machine.

mod harness;

use harness::guest::{self, agent_log, check_mismatches};
use harness::{Lab, LabConfig, Layout, Vm, IGNORE_MSG};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const BLOCK: u64 = 64 * 1024;
const SECTORS_PER_BLOCK: u64 = BLOCK / 512;
/// A sector: 24 bytes of header `B<block:7>G<gen:11>S<sector:3>`, this filler, `\n`.
const FILL_LEN: usize = 487;
const STEP: Duration = Duration::from_secs(120);
const AGENT_START: Duration = Duration::from_secs(30);

const FAULTS: [&str; 5] = [
    "server_kill",
    "server_freeze",
    "fail_at_recovery_end",
    "agent_kill9",
    "guest_reboot",
];

fn fill() -> String {
    "-mdguard-soak".repeat(FILL_LEN / 13 + 1)[..FILL_LEN].to_string()
}

/// The writer: `soak-writer NBLOCKS FIRST_GEN SEED FILL`. Between writes it
/// honours a pause request (`/tmp/soak.pause` holds a token; it answers by
/// copying it to `/tmp/soak.paused` and waits until the request is gone).
/// Every write is journaled: `W block gen` when dd succeeded, `E block gen`
/// when it failed (the block then holds the old or the new generation).
const WRITER: &str = r#"n=$1; g=$2; RANDOM=$3; f=$4
while :; do
  if [ -e /tmp/soak.pause ]; then
    cp /tmp/soak.pause /tmp/soak.paused
    while [ -e /tmp/soak.pause ]; do usleep 20000; done
    continue
  fi
  i=$((RANDOM % n))
  awk -v i=$i -v g=$g -v f=$f 'BEGIN { for (s = 0; s < 128; s++) printf "B%07dG%011dS%03d%s\n", i, g, s, f }' > /tmp/soak.blk
  if dd if=/tmp/soak.blk of=/dev/md0 bs=65536 seek=$i count=1 oflag=direct conv=notrunc 2>/dev/null; then
    echo "W $i $g" >> /tmp/soak.journal
  else
    echo "E $i $g" >> /tmp/soak.journal
  fi
  g=$((g + 1))
done
"#;

/// The checker: reads 512-byte sectors (made line-safe: newlines to `#`, any
/// other unexpected byte to `.`, folded at 512) and prints per block `b gen`
/// when all its sectors are well-formed sectors of block b of one generation,
/// else `b BAD what`; at the end `sectors N`. The generation is printed as
/// the zero-padded digits it was read as: busybox awk takes a number string
/// with a leading 0 for octal (the first run of this soak "found" stale
/// blocks that were 0124 read as 84).
const VERIFY_AWK: &str = r#"{
  n = NR - 1; b = int(n / spb); s = n % spb
  if (s == 0) { bad = ""; g = "" }
  if (bad == "") {
    gg = substr($0, 10, 11)
    if (gg !~ /^[0-9]+$/ || length(gg) != 11 || $0 != sprintf("B%07dG%sS%03d%s#", b, gg, s, f)) {
      bad = "sector " s ": " substr($0, 1, 32)
    } else if (g == "") { g = gg } else if (gg != g) { bad = "sector " s ": generation " gg " after " g }
  }
  if (s == spb - 1) { if (bad == "") print b, g; else print b, "BAD", bad }
}
END { print "sectors", NR }
"#;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// splitmix64: small, seedable, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Settings {
    cycles: u64,
    seed: u64,
    check_every: u64,
    cycle_timeout: Duration,
    region_mib: u64,
    leg_mib: u64,
    max_kbps: u64,
    faults: Vec<&'static str>,
    out: std::path::PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let seed = std::env::var("MDGUARD_SOAK_SEED")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    % 1_000_000_000_000
            });
        let faults = match std::env::var("MDGUARD_SOAK_FAULTS") {
            Ok(list) if !list.trim().is_empty() => list
                .split(',')
                .map(|f| {
                    *FAULTS.iter().find(|k| **k == f.trim()).unwrap_or_else(|| {
                        panic!("MDGUARD_SOAK_FAULTS: unknown fault {f:?}; known: {FAULTS:?}")
                    })
                })
                .collect(),
            _ => FAULTS.to_vec(),
        };
        let out = std::env::var_os("MDGUARD_SOAK_OUT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/soak/results.json")
            });
        let s = Settings {
            cycles: env_u64("MDGUARD_SOAK_CYCLES", 3),
            seed,
            check_every: env_u64("MDGUARD_SOAK_CHECK_EVERY", 5).max(1),
            cycle_timeout: Duration::from_secs(env_u64("MDGUARD_SOAK_CYCLE_TIMEOUT_S", 300)),
            region_mib: env_u64("MDGUARD_SOAK_REGION_MIB", 8),
            leg_mib: env_u64("MDGUARD_SOAK_LEG_MIB", 32),
            max_kbps: env_u64("MDGUARD_SOAK_MAX_KBPS", 4000),
            faults,
            out,
        };
        assert!(
            s.region_mib >= 1 && s.region_mib + 2 <= s.leg_mib,
            "the written region ({} MiB) must fit the leg's data area ({} MiB legs)",
            s.region_mib,
            s.leg_mib
        );
        s
    }

    fn blocks(&self) -> u64 {
        self.region_mib * 1024 * 1024 / BLOCK
    }

    fn json(&self) -> Value {
        json!({
            "cycles": self.cycles, "seed": self.seed, "check_every": self.check_every,
            "cycle_timeout_s": self.cycle_timeout.as_secs(), "region_mib": self.region_mib,
            "leg_mib": self.leg_mib, "block_bytes": BLOCK, "agent_max_kbps": self.max_kbps,
            "faults": self.faults,
        })
    }
}

/// What one block should hold.
#[derive(Clone, Copy)]
struct Expect {
    gen: u64,
    /// A later write that failed: the block may hold that generation instead.
    alt: Option<u64>,
}

/// The run's state and counters.
struct Soak {
    s: Settings,
    blocks: Vec<Expect>,
    next_gen: u64,
    writes: u64,
    write_errors: u64,
    bytes_verified: u64,
    verify_failures: u64,
    failures: Vec<Value>,
    mismatches: u64,
    checks: u64,
    /// Agent logs of guests that were powered off.
    old_logs: String,
    pause_token: u64,
    boots: u64,
    limits_left: u64,
}

fn agent_cfg(lab: &Lab, max_kbps: u64) -> String {
    let mut cfg = format!(
        "[throttle]\njitter_s = 0\nmax_kbps = {max_kbps}\nbusy_divisor = 2\n\
         [probe]\ninitial_interval_s = 1\nmax_interval_s = 4\ntimeout_ms = 3000\n\
         [heal]\nflap_window_s = 0\n"
    );
    for i in 0..lab.legs.len() {
        cfg.push_str(&lab.reconnect_cfg(i, " -t 5"));
    }
    cfg
}

/// Start mdguard again after a kill -9, appending to the same log.
fn restart_agent(vm: &mut Vm) {
    let before = agent_log(vm).matches("watching md arrays").count();
    vm.sh(&format!(
        "echo '--- soak: mdguard restarted' >> {0}; MDGUARD_LOG_TIMESTAMPS=1 setsid mdguard run --foreground \
         </dev/null >>{0} 2>&1 & echo $! > /tmp/mdguard.pid",
        guest::AGENT_LOG
    ));
    vm.wait_for("mdguard restarted", AGENT_START, |vm| {
        (agent_log(vm).matches("watching md arrays").count() > before).then_some(())
    });
    wait_armed(vm);
}

/// Wait until the agent has md0's sysfs files open for POLLPRI. mdguard
/// arms them only after its first look at md, so a failure in between is
/// not seen until something else wakes it (found by this soak, seed 1: a leg
/// failed 0.23 s after "watching md arrays" and mdguard slept for 9 minutes).
/// `MDGUARD_SOAK_NO_ARM_WAIT=1` skips this wait, to reproduce that.
fn wait_armed(vm: &mut Vm) {
    if std::env::var_os("MDGUARD_SOAK_NO_ARM_WAIT").is_some_and(|v| v == "1") {
        return;
    }
    vm.wait_for("mdguard watching md0's sysfs files", AGENT_START, |vm| {
        vm.run(
            "ls -l /proc/$(cat /tmp/mdguard.pid)/fd | grep -q 'md0/md/degraded'",
            STEP,
        )
        .status
        .eq(&0)
        .then_some(())
    });
}

fn agent_alive(vm: &mut Vm) -> bool {
    vm.run("kill -0 $(cat /tmp/mdguard.pid)", STEP).status == 0
}

fn writer_alive(vm: &mut Vm) -> bool {
    vm.run("kill -0 $(cat /tmp/soak.writer.pid)", STEP).status == 0
}

/// The guest's scripts, written once per boot.
fn install_scripts(vm: &mut Vm) {
    vm.sh(&format!(
        "cat > /tmp/soak-writer.sh <<'EOF'\n{WRITER}EOF\ncat > /tmp/soak-verify.awk <<'EOF'\n{VERIFY_AWK}EOF"
    ));
}

/// Split at ": re-added " and take the device: how often each was re-added.
fn readds(log: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in log.lines() {
        if let Some(rest) = l.split(": re-added ").nth(1) {
            let dev = rest.split_whitespace().next().unwrap_or("").to_string();
            *m.entry(dev).or_insert(0) += 1;
        }
    }
    m
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Time left before `deadline`; panics (a cycle timeout) when none is.
fn left(deadline: Instant) -> Duration {
    let d = deadline.saturating_duration_since(Instant::now());
    assert!(!d.is_zero(), "cycle timeout");
    d
}

impl Soak {
    fn sample_leg_offset(lab: &mut Lab, leg: usize) -> u64 {
        let dev = lab.legs[leg].nbd.clone();
        let out = lab.vm.sh(&format!("mdadm --examine /dev/{dev}"));
        out.lines()
            .find_map(|l| l.trim().strip_prefix("Data Offset : "))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Data Offset in mdadm --examine /dev/{dev}:\n{out}"))
    }

    /// Start (or restart, after a reboot) the writer from the next generation.
    fn start_writer(&mut self, vm: &mut Vm) {
        let rseed = (self.s.seed ^ self.boots.wrapping_mul(0x9E37)) % 32768;
        vm.sh(&format!(
            "rm -f /tmp/soak.pause /tmp/soak.paused; setsid sh /tmp/soak-writer.sh {} {} {rseed} {} \
             </dev/null >/tmp/soak.writer.log 2>&1 & echo $! > /tmp/soak.writer.pid",
            self.s.blocks(),
            self.next_gen,
            fill()
        ));
    }

    /// Ask the writer to stop between writes; false when it did not within `timeout`.
    fn pause(&mut self, vm: &mut Vm, timeout: Duration) -> bool {
        self.pause_token += 1;
        let t = self.pause_token;
        vm.sh(&format!(
            "echo {t} > /tmp/soak.pause.new && mv /tmp/soak.pause.new /tmp/soak.pause"
        ));
        harness::wait_until(timeout, || {
            vm.run("cat /tmp/soak.paused 2>/dev/null", STEP)
                .stdout
                .trim()
                == t.to_string()
        })
    }

    fn resume(vm: &mut Vm) {
        vm.sh("rm -f /tmp/soak.pause");
    }

    /// Take the (paused) writer's journal into the expectations.
    fn harvest(&mut self, vm: &mut Vm) -> (u64, u64) {
        let j = vm.sh("cat /tmp/soak.journal 2>/dev/null; : > /tmp/soak.journal");
        let (mut w, mut e) = (0, 0);
        for l in j.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (Some(kind), Some(b), Some(g)) = (
                f.first(),
                f.get(1).and_then(|v| v.parse::<usize>().ok()),
                f.get(2).and_then(|v| v.parse::<u64>().ok()),
            ) else {
                continue;
            };
            if b >= self.blocks.len() {
                continue;
            }
            self.next_gen = self.next_gen.max(g + 1);
            match *kind {
                "W" => {
                    self.blocks[b] = Expect { gen: g, alt: None };
                    w += 1;
                }
                "E" => {
                    self.blocks[b].alt = Some(g);
                    e += 1;
                }
                _ => {}
            }
        }
        self.writes += w;
        self.write_errors += e;
        (w, e)
    }

    /// Read every block of the region from `dev` (from `off` sectors on) and
    /// compare it with what it should hold; returns how many blocks are wrong
    /// (each one recorded in `failures`).
    fn verify(&mut self, vm: &mut Vm, dev: &str, off: u64, cycle: u64, what: &str) -> u64 {
        let sectors = self.s.region_mib * 2048;
        let bs = [2048u64, 128, 8, 1]
            .into_iter()
            .find(|b| off % b == 0 && sectors % b == 0)
            .unwrap();
        let script = format!(
            "dd if=/dev/{dev} bs={} skip={} count={} iflag=direct 2>/dev/null | tr '\\n' '#' | \
             tr -c 'A-Za-z0-9#-' '.' | fold -w 512 | awk -v spb={SECTORS_PER_BLOCK} -v f={} -f /tmp/soak-verify.awk",
            bs * 512,
            off / bs,
            sectors / bs,
            fill()
        );
        let out = vm.run(&script, STEP);
        let mut seen: BTreeMap<usize, Result<u64, String>> = BTreeMap::new();
        let mut read = 0;
        for l in out.stdout.lines() {
            let mut w = l.splitn(3, ' ');
            match (w.next(), w.next(), w.next()) {
                (Some("sectors"), Some(n), _) => read = n.parse().unwrap_or(0),
                (Some(b), Some("BAD"), rest) => {
                    if let Ok(b) = b.parse() {
                        seen.insert(b, Err(rest.unwrap_or("").to_string()));
                    }
                }
                (Some(b), Some(g), None) => {
                    if let (Ok(b), Ok(g)) = (b.parse(), g.parse()) {
                        seen.insert(b, Ok(g));
                    }
                }
                _ => {}
            }
        }
        let mut bad = 0;
        if read != sectors {
            self.failures.push(json!({"cycle": cycle, "where": what, "device": dev,
                "error": format!("read {read} of {sectors} sectors (status {}): {}", out.status, out.stderr.trim())}));
        }
        for b in 0..self.blocks.len() {
            let e = self.blocks[b];
            let got = seen.get(&b).cloned();
            match &got {
                Some(Ok(g)) if *g == e.gen || Some(*g) == e.alt => {
                    self.blocks[b] = Expect { gen: *g, alt: None };
                    continue;
                }
                _ => {}
            }
            bad += 1;
            let got = match got {
                Some(Ok(g)) if g < e.gen => {
                    format!("generation {g}: a stale block (older than the last write)")
                }
                Some(Ok(g)) => format!("generation {g}"),
                Some(Err(what)) => format!("not a well-formed block: {what}"),
                None => "not read".into(),
            };
            if self.failures.len() < 500 {
                self.failures.push(
                    json!({"cycle": cycle, "where": what, "device": dev, "block": b,
                    "expected_gen": e.gen, "or_gen": e.alt, "got": got}),
                );
            }
        }
        self.bytes_verified += (read.min(sectors)) * 512;
        self.verify_failures += bad;
        bad
    }

    /// Power the guest off (SIGKILL to QEMU), boot a new one on the same
    /// servers, assemble md0 from both legs, start the agent and the writer.
    fn reboot(&mut self, lab: &mut Lab) {
        self.old_logs.push_str(&live_agent_log(&mut lab.vm));
        self.old_logs.push_str("--- soak: guest powered off\n");
        let pid = lab.vm.pid().to_string();
        // (a QEMU already gone, after a guest that died, is not an error)
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("kill");
        self.boots += 1;
        let dir = lab.dir().join(format!("boot{}", self.boots));
        std::fs::create_dir_all(&dir).unwrap();
        // the old Vm (its QEMU dead) is dropped here and reaped
        lab.vm = Vm::boot(harness::assets(), &dir);
        for i in 0..lab.legs.len() {
            lab.connect_leg(i);
        }
        lab.unthrottle();
        lab.vm
            .sh("mdadm --assemble --run /dev/md0 /dev/nbd0 /dev/nbd1");
        install_scripts(&mut lab.vm);
        let cfg = agent_cfg(lab, self.s.max_kbps);
        guest::start_agent(&mut lab.vm, &cfg, "run --foreground", AGENT_START);
        wait_armed(&mut lab.vm);
        self.start_writer(&mut lab.vm);
    }

    fn all_logs(&self, vm: &mut Vm) -> String {
        format!("{}{}", self.old_logs, live_agent_log(vm))
    }
}

/// The agent's log, or nothing from a guest that no longer answers (it died:
/// its log is lost with it; what it said before its last reboot is kept).
fn live_agent_log(vm: &mut Vm) -> String {
    vm.try_run(&format!("cat {}", guest::AGENT_LOG), STEP)
        .map(|s| s.stdout)
        .unwrap_or_default()
}

/// Wait until md0 is degraded and idle (the leg failed, no recovery running).
fn wait_failed(lab: &mut Lab, deadline: Instant) {
    lab.wait_snapshot("md0 degraded, no sync", left(deadline), |s| {
        s.get("md0", "degraded") == Some("1") && s.get("md0", "sync_action") == Some("idle")
    });
}

/// Wait until md0 recovers, or is already healed; Some(fraction done) while
/// recovering with at least `min_frac` done, None when it had healed.
fn wait_recovering(lab: &mut Lab, deadline: Instant, min_frac: f64) -> Option<f64> {
    lab.vm
        .wait_for("md0 recovering (or healed)", left(deadline), |vm| {
            let s = harness::Snapshot::parse(&vm.sh("snap"));
            if s.get("md0", "degraded") == Some("0") && s.get("md0", "sync_action") == Some("idle")
            {
                return Some(None);
            }
            if s.get("md0", "sync_action") != Some("recover") {
                return None;
            }
            let frac = s
                .get("md0", "sync_completed")
                .and_then(|c| c.split_once(" / "))
                .and_then(|(d, t)| {
                    Some(d.trim().parse::<f64>().ok()? / t.trim().parse::<f64>().ok()?)
                })
                .unwrap_or(0.0);
            (frac >= min_frac).then_some(Some(frac))
        })
}

/// The generation of the writer's last journaled write (without pausing it).
fn last_gen(vm: &mut Vm) -> Option<u64> {
    vm.run("tail -n 1 /tmp/soak.journal 2>/dev/null", STEP)
        .stdout
        .split_whitespace()
        .nth(2)
        .and_then(|g| g.parse().ok())
}

/// One fault and its heal. Returns notes for the record; panics on a timeout.
fn inject(
    lab: &mut Lab,
    soak: &mut Soak,
    fault: &str,
    leg: usize,
    rec: &mut Value,
    deadline: Instant,
) {
    let t = Instant::now();
    let mut note = String::new();
    rec["gen_at_fault"] = json!(last_gen(&mut lab.vm));
    match fault {
        "server_freeze" => {
            lab.legs[leg].server.freeze();
            wait_failed(lab, deadline);
            rec["fail_s"] = json!(secs(t.elapsed()));
            lab.legs[leg].server.resume();
        }
        _ => {
            lab.legs[leg].server.kill();
            wait_failed(lab, deadline);
            rec["fail_s"] = json!(secs(t.elapsed()));
            if fault == "guest_reboot" {
                // the writer stops before the power-off, so the host knows
                // every write that returned; md's own writes are in flight
                assert!(
                    soak.pause(&mut lab.vm, left(deadline).min(STEP)),
                    "writer did not pause"
                );
                soak.harvest(&mut lab.vm);
            }
            lab.legs[leg].server.restart();
        }
    }
    let back = Instant::now();
    rec["gen_at_restore"] = json!(last_gen(&mut lab.vm));
    match fault {
        "fail_at_recovery_end" => {
            match wait_recovering(lab, deadline, 0.6) {
                Some(f) => note = format!("killed again at {:.0}% of the recovery", f * 100.0),
                None => note = "killed again right after the recovery ended".into(),
            }
            lab.legs[leg].server.kill();
            wait_failed(lab, deadline);
            lab.legs[leg].server.restart();
        }
        "agent_kill9" => {
            note = match wait_recovering(lab, deadline, 0.0) {
                Some(f) => format!("mdguard killed -9 at {:.0}% of the recovery", f * 100.0),
                None => "mdguard killed -9 right after the recovery ended".into(),
            };
            lab.vm.sh("kill -9 $(cat /tmp/mdguard.pid)");
            restart_agent(&mut lab.vm);
        }
        "guest_reboot" => {
            note = match wait_recovering(lab, deadline, 0.0) {
                Some(f) => format!("guest powered off at {:.0}% of the recovery", f * 100.0),
                None => "guest powered off right after the recovery ended".into(),
            };
            soak.reboot(lab);
        }
        _ => {}
    }
    lab.wait_healed("md0", left(deadline));
    rec["heal_s"] = json!(secs(back.elapsed()));
    // mdguard puts the resync limits back once the recovery is over
    let restored = harness::wait_until(Duration::from_secs(30).min(left(deadline)), || {
        lab.vm
            .run("cat /sys/block/md0/md/sync_speed_max", STEP)
            .stdout
            .contains("(system)")
    });
    if !restored {
        soak.limits_left += 1;
    }
    rec["limits_restored"] = json!(restored);
    if !note.is_empty() {
        rec["note"] = json!(note);
    }
}

/// After a heal: pause the writer, verify md0 and the leg that came back, check.
fn verify_cycle(
    lab: &mut Lab,
    soak: &mut Soak,
    cycle: u64,
    leg: usize,
    check: bool,
    rec: &mut Value,
) {
    let t = Instant::now();
    assert!(soak.pause(&mut lab.vm, STEP), "writer did not pause");
    let (w, e) = soak.harvest(&mut lab.vm);
    rec["writes"] = json!(w);
    rec["write_errors"] = json!(e);
    let bad_md = soak.verify(&mut lab.vm, "md0", 0, cycle, "md0");
    let nbd = lab.legs[leg].nbd.clone();
    let off = Soak::sample_leg_offset(lab, leg);
    let bad_leg = soak.verify(&mut lab.vm, &nbd, off, cycle, "leg below md");
    // the other leg too: tells a returning leg left stale from data never written
    let other = 1 - leg;
    let onbd = lab.legs[other].nbd.clone();
    let ooff = Soak::sample_leg_offset(lab, other);
    let bad_other = soak.verify(&mut lab.vm, &onbd, ooff, cycle, "other leg below md");
    rec["bad_blocks_md0"] = json!(bad_md);
    rec["bad_blocks_leg"] = json!(bad_leg);
    rec["bad_blocks_other_leg"] = json!(bad_other);
    rec["verify_s"] = json!(secs(t.elapsed()));
    if check {
        let t = Instant::now();
        let n = check_mismatches(&mut lab.vm, "md0", STEP * 2);
        soak.mismatches += n;
        soak.checks += 1;
        rec["mismatch_cnt"] = json!(n);
        rec["last_sync_action"] = json!(lab.vm.sh("cat /sys/block/md0/md/last_sync_action").trim());
        rec["check_s"] = json!(secs(t.elapsed()));
        if n != 0 {
            let dmesg = lab.vm.sh("dmesg | tail -60");
            rec["dmesg_tail"] = json!(dmesg);
        }
    }
    Soak::resume(&mut lab.vm);
}

/// After a cycle that could not be carried out: get both servers and the
/// guest's processes back and wait for a heal; false if even that fails.
fn recover(lab: &mut Lab, soak: &mut Soak) -> bool {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for leg in lab.legs.iter_mut() {
            if leg.server.is_running() {
                leg.server.resume();
            } else {
                leg.server.restart();
            }
        }
        // a guest that died (a boot that panicked, a QEMU gone) is booted again
        if lab.vm.try_run("true", STEP).is_err() {
            soak.reboot(lab);
        }
        if !agent_alive(&mut lab.vm) {
            restart_agent(&mut lab.vm);
        }
        if !writer_alive(&mut lab.vm) {
            soak.start_writer(&mut lab.vm);
        }
        Soak::resume(&mut lab.vm);
        lab.wait_healed("md0", Duration::from_secs(240));
    }));
    r.is_ok()
}

#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn soak() {
    let _ = IGNORE_MSG;
    let s = Settings::from_env();
    let t0 = Instant::now();
    eprintln!(
        "soak: seed {} (replay: MDGUARD_SOAK_SEED={}), {} cycles, faults {:?}",
        s.seed, s.seed, s.cycles, s.faults
    );
    let load_start = harness::host_sh("cat /proc/loadavg");
    let mut lab = Lab::start_clean(
        "soak",
        LabConfig::healing(Layout::Mirror, Some(5), s.leg_mib),
        Duration::from_secs(300),
    );
    let boot_s = lab.vm.boot_time.as_secs_f64();
    let n = s.blocks() as usize;
    let mut soak = Soak {
        blocks: vec![Expect { gen: 0, alt: None }; n],
        next_gen: 1,
        writes: 0,
        write_errors: 0,
        bytes_verified: 0,
        verify_failures: 0,
        failures: Vec::new(),
        mismatches: 0,
        checks: 0,
        old_logs: String::new(),
        pause_token: 0,
        boots: 0,
        limits_left: 0,
        s,
    };
    install_scripts(&mut lab.vm);
    // generation 0 of every block, so every block can be checked from the start
    lab.vm.sh(&format!(
        "awk -v n={n} -v f={} 'BEGIN {{ for (i = 0; i < n; i++) for (s = 0; s < 128; s++) \
         printf \"B%07dG%011dS%03d%s\\n\", i, 0, s, f }}' > /tmp/soak.init && \
         dd if=/tmp/soak.init of=/dev/md0 bs=1M oflag=direct conv=notrunc,fsync 2>/dev/null && rm /tmp/soak.init",
        fill()
    ));
    let cfg = agent_cfg(&lab, soak.s.max_kbps);
    guest::start_agent(&mut lab.vm, &cfg, "run --foreground", AGENT_START);
    wait_armed(&mut lab.vm);
    soak.start_writer(&mut lab.vm);
    let setup_s = t0.elapsed().as_secs_f64();

    let mut records = Vec::new();
    let progress = soak.s.out.with_extension("cycles.jsonl");
    if let Some(dir) = progress.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let _ = std::fs::write(
        &progress,
        format!(
            "{}\n",
            json!({"seed": soak.s.seed, "config": soak.s.json()})
        ),
    );
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut aborted = None;
    let cycles = soak.s.cycles;
    for cycle in 1..=cycles {
        let cseed = soak.s.seed ^ cycle.wrapping_mul(0xA24B_AED4_963E_E407);
        let mut rng = Rng(cseed);
        let fault = soak.s.faults[rng.below(soak.s.faults.len() as u64) as usize];
        let leg = rng.below(2) as usize;
        let check = cycle % soak.s.check_every == 0 || cycle == cycles;
        let mut rec = json!({"cycle": cycle, "cycle_seed": cseed, "fault": fault, "leg": leg});
        let readds_before = readds(&soak.all_logs(&mut lab.vm));
        let (bytes_before, bad_before) = (soak.writes, soak.verify_failures);
        let t = Instant::now();
        let deadline = t + soak.s.cycle_timeout;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inject(&mut lab, &mut soak, fault, leg, &mut rec, deadline);
            verify_cycle(&mut lab, &mut soak, cycle, leg, check, &mut rec);
        }));
        if let Err(e) = r {
            let msg = panic_text(e);
            eprintln!("soak: cycle {cycle} ({fault}, leg {leg}) could not be carried out: {msg}");
            // evidence for a report: the agent's log, the console, the kernel's view
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("target/soak/cycle-{cycle}"));
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("console.txt"), lab.vm.console_tail(400));
            if let Ok(st) = lab.vm.try_run(
                "cat /tmp/mdguard.log; echo '=== mdstat'; cat /proc/mdstat; echo '=== dmesg'; dmesg | tail -100",
                STEP,
            ) {
                let _ = std::fs::write(dir.join("guest.txt"), st.stdout);
            }
            errors.push(format!(
                "cycle {cycle} (seed {cseed}, {fault}, leg {leg}): {msg}"
            ));
            rec["error"] = json!(msg.lines().next().unwrap_or("").to_string());
            if !recover(&mut lab, &mut soak) {
                aborted = Some(format!("after cycle {cycle}: the lab did not heal again"));
            }
        } else {
            *by_kind.entry(fault).or_insert(0) += 1;
        }
        let after = readds(&soak.all_logs(&mut lab.vm));
        let delta: BTreeMap<&String, u64> = after
            .iter()
            .map(|(d, n)| (d, n - readds_before.get(d).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        rec["readds"] = json!(delta);
        rec["total_s"] = json!(secs(t.elapsed()));
        eprintln!(
            "soak: cycle {cycle}/{cycles} {fault} leg {leg}: {:.1} s, {} writes, {} bad blocks{}",
            t.elapsed().as_secs_f64(),
            soak.writes - bytes_before,
            soak.verify_failures - bad_before,
            rec.get("note")
                .map(|n| format!(" ({})", n.as_str().unwrap_or("")))
                .unwrap_or_default()
        );
        // as it goes, so a run stopped early still leaves its cycles
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&progress)
        {
            use std::io::Write;
            let _ = writeln!(f, "{rec}");
        }
        records.push(rec);
        if aborted.is_some() {
            break;
        }
    }

    // the end: every block through md0 and below md on both legs, and a check
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut rec = json!({});
        assert!(soak.pause(&mut lab.vm, STEP), "writer did not pause");
        soak.harvest(&mut lab.vm);
        soak.verify(&mut lab.vm, "md0", 0, 0, "md0 (final)");
        for leg in 0..lab.legs.len() {
            let nbd = lab.legs[leg].nbd.clone();
            let off = Soak::sample_leg_offset(&mut lab, leg);
            soak.verify(&mut lab.vm, &nbd, off, 0, "leg below md (final)");
        }
        let n = check_mismatches(&mut lab.vm, "md0", STEP * 2);
        soak.mismatches += n;
        soak.checks += 1;
        rec["mismatch_cnt"] = json!(n);
        rec
    }));
    let final_rec = match r {
        Ok(v) => v,
        Err(e) => {
            let msg = panic_text(e);
            errors.push(format!("final verification: {msg}"));
            json!({"error": msg})
        }
    };
    let log = soak.all_logs(&mut lab.vm);
    let all_readds = readds(&log);
    let legs: Vec<String> = lab.legs.iter().map(|l| l.nbd.clone()).collect();
    let wrong_adds: u64 = all_readds
        .iter()
        .filter(|(d, _)| !legs.contains(d))
        .map(|(_, n)| n)
        .sum();
    let spares = log.matches("as a spare for a full recovery").count();
    let done: u64 = by_kind.values().sum();
    let wall = t0.elapsed().as_secs_f64();
    let cycle_times: Vec<f64> = records
        .iter()
        .filter_map(|r| r["total_s"].as_f64())
        .collect();
    let mean = cycle_times.iter().sum::<f64>() / cycle_times.len().max(1) as f64;
    let max = cycle_times.iter().cloned().fold(0.0, f64::max);
    let totals = json!({
        "cycles_done": done, "cycles_by_fault": by_kind, "cycles_failed": errors.len(),
        "writes": soak.writes, "bytes_written": soak.writes * BLOCK, "write_errors": soak.write_errors,
        "bytes_verified": soak.bytes_verified, "verification_failures": soak.verify_failures,
        "mismatch_cnt_sum": soak.mismatches, "checks": soak.checks,
        "readds": all_readds, "wrong_device_adds": wrong_adds, "full_recoveries": spares,
        "limits_left_throttled": soak.limits_left, "guest_boots": soak.boots + 1,
        "cycle_s": {"mean": secs(Duration::from_secs_f64(mean)), "max": max},
        "setup_s": secs(Duration::from_secs_f64(setup_s)), "wall_s": secs(Duration::from_secs_f64(wall)),
    });
    let results = json!({
        "date": harness::host_sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
        "seed": soak.s.seed,
        "config": soak.s.json(),
        "agent_config": cfg,
        "machine": {
            "cpus": harness::host_sh("nproc"), "cpu": harness::host_sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            "host_kernel": harness::host_sh("uname -r"), "qemu": harness::host_sh("qemu-system-x86_64 --version | head -1"),
            "accel": "tcg", "guest": "1 vCPU, 256 MiB", "guest_kernel": harness::assets().kernel_version,
            "first_boot_s": boot_s, "loadavg_start": load_start, "loadavg_end": harness::host_sh("cat /proc/loadavg"),
        },
        "totals": totals,
        "final": final_rec,
        "errors": errors,
        "aborted": aborted,
        "failures": soak.failures,
        "cycles": records,
    });
    if let Some(dir) = soak.s.out.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(
        &soak.s.out,
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
    std::fs::write(soak.s.out.with_extension("agent.log"), &log).unwrap();
    println!(
        "\nsoak summary (seed {}): {done}/{cycles} cycles {by_kind:?}; {} writes ({:.1} MiB), \
         {} write errors; {:.1} MiB verified, {} bad blocks; mismatch_cnt sum {} over {} checks; \
         re-adds {all_readds:?}, {wrong_adds} of a wrong device, {spares} full recoveries; \
         limits left throttled {}; cycle {mean:.1} s mean, {max:.1} s max; {wall:.0} s in all\n({:?})",
        soak.s.seed,
        soak.writes,
        (soak.writes * BLOCK) as f64 / 1048576.0,
        soak.write_errors,
        soak.bytes_verified as f64 / 1048576.0,
        soak.verify_failures,
        soak.mismatches,
        soak.checks,
        soak.limits_left,
        soak.s.out
    );
    for e in &errors {
        println!("error: {e}");
    }
    assert!(
        soak.verify_failures == 0 && soak.failures.is_empty(),
        "verification failures (seed {}): {:#?}",
        soak.s.seed,
        soak.failures
    );
    assert_eq!(
        soak.mismatches, 0,
        "md check found mismatches (seed {})",
        soak.s.seed
    );
    assert_eq!(
        wrong_adds, 0,
        "re-adds of a device that is not a leg: {all_readds:?}"
    );
    assert_eq!(
        soak.limits_left, 0,
        "resync limits left throttled after a heal"
    );
    assert!(
        errors.is_empty() && aborted.is_none(),
        "cycles that could not be carried out (seed {}): {errors:#?} {aborted:?}",
        soak.s.seed
    );
}
