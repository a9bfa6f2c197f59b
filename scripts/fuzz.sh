#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time and print how many inputs each ran.
#
#   scripts/fuzz.sh [seconds-per-target]      (default 60)
#   FUZZ_TARGETS="superblock" scripts/fuzz.sh 30   (a subset)
#
# Seeds: the shared mdstat captures (../shared/corpus/external, relative to the repo
# root, or $MDGUARD_CORPUS_DIR) and tests/fixtures. The shared captures are not part
# of the repository: when they are missing the mdstat target runs on tests/fixtures
# alone and says so; with CI=true a missing corpus is an error (exit 1).
# New inputs go to fuzz/corpus/<target> (not committed);
# crashes to fuzz/artifacts/<target>. Installs cargo-fuzz when it is missing. Uses
# the nightly toolchain when rustup has it; otherwise stable with RUSTC_BOOTSTRAP=1
# (sanitizer flags need nightly features). Exits non-zero if any target failed.
set -euo pipefail

secs="${1:-60}"
case "$secs" in
'' | *[!0-9]*)
	echo "usage: $0 [seconds-per-target]" >&2
	exit 2
	;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# the shared captures, looked for once (the same rule as tests/corpus.rs)
external="${MDGUARD_CORPUS_DIR:-../shared/corpus/external}"
in_ci() { case "${CI:-}" in [Tt][Rr][Uu][Ee] | 1) return 0 ;; *) return 1 ;; esac; }

targets="${FUZZ_TARGETS:-superblock mdstat xenstore_wire}"
# checked before any target runs, so CI fails at once
if [[ " $targets " == *" mdstat "* && ! -d $external ]]; then
	if in_ci; then
		echo "fuzz.sh: external mdstat corpus not found: looked for $external (from $root); CI=true requires it" >&2
		exit 1
	fi
	echo "fuzz.sh: external mdstat corpus not found: looked for $external (from $root); seeding mdstat from tests/fixtures only" >&2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "fuzz.sh: installing cargo-fuzz from crates.io" >&2
	cargo install cargo-fuzz --locked
fi

cargo_fuzz=(cargo fuzz)
if rustup run nightly rustc --version >/dev/null 2>&1; then
	cargo_fuzz=(cargo +nightly fuzz)
else
	echo "fuzz.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
	export RUSTC_BOOTSTRAP=1
fi

status=0
summary=()
for target in $targets; do
	seeds=()
	case "$target" in
	superblock) max_len=8192 seed_dirs=(tests/fixtures/superblock) ;;
	xenstore_wire) max_len=8192 seed_dirs=(tests/fixtures/xenstore) ;;
	mdstat)
		max_len=16384 seed_dirs=(tests/fixtures/mdstat tests/fixtures)
		if [ -d "$external" ]; then
			seed_dirs=("$external" "${seed_dirs[@]}")
		fi
		;;
	*) max_len=8192 seed_dirs=(tests/fixtures) ;;
	esac
	for d in "${seed_dirs[@]}"; do
		[ -d "$d" ] && seeds+=("$(cd "$d" && pwd)")
	done
	corpus="fuzz/corpus/$target"
	mkdir -p "$corpus" "fuzz/artifacts/$target"
	log="fuzz/artifacts/$target/last-run.log"

	echo "fuzz.sh: $target for ${secs}s (seeds: ${seeds[*]:-none})" >&2
	set +e
	"${cargo_fuzz[@]}" run "$target" "$corpus" "${seeds[@]}" -- \
		-max_total_time="$secs" -max_len="$max_len" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
	rc=$?
	set -e

	# libFuzzer ends with "Done N runs in S second(s)"; a crash ends it early.
	runs="$(sed -n 's/.*Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 execs in \2 s/p' "$log" | tail -n1)"
	if [ -z "$runs" ]; then
		runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1 execs/p' "$log" | tail -n1)"
	fi
	if [ "$rc" -ne 0 ]; then
		status=1
		summary+=("$target: FAILED (exit $rc) after ${runs:-? execs}; see $log and fuzz/artifacts/$target/")
		grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 10 >&2 || tail -n 30 "$log" >&2
	else
		summary+=("$target: ok, ${runs:-? execs} ($(find "$corpus" -type f | wc -l) corpus entries)")
	fi
done

echo "fuzz.sh summary:"
printf '  %s\n' "${summary[@]}"
exit "$status"
