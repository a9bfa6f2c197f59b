#!/usr/bin/env bash
# Runs the xenstore tests, including those that need a real xenstored (the C
# one, then the OCaml oxenstored):
# provisions Debian's xenstored + xenstore-utils first (idempotent).
# Extra arguments go to the test binaries (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/xs/provision.sh
cargo test --lib xenstore
cargo test --test xenstore_props --test xenstore_daemon --test xenstore_host --test xenstore_agent --test xenstore_storage --test xenstore_hostile --test xenstore_metrics --test xenstore_admission --test xenstore_host_run -- --include-ignored "$@"
# The same tests against the OCaml oxenstored (the daemon XCP-ng and some
# Xen hosts run), through the same shim: see tests/xs/README.md.
MDGUARD_XENSTORED=oxenstored cargo test --test xenstore_daemon --test xenstore_host --test xenstore_agent --test xenstore_storage --test xenstore_hostile --test xenstore_metrics --test xenstore_admission --test xenstore_host_run -- --include-ignored "$@"
