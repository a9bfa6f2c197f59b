#!/usr/bin/env bash
# Runs the xenstore tests, including those that need a real xenstored:
# provisions Debian's xenstored + xenstore-utils first (idempotent).
# Extra arguments go to the test binaries (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/xs/provision.sh
cargo test --lib xenstore
cargo test --test xenstore_props --test xenstore_daemon --test xenstore_host --test xenstore_agent -- --include-ignored "$@"
