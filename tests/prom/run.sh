#!/usr/bin/env bash
# The prometheus tier: a real Prometheus (Debian's) scraping real
# prometheus-node-exporters whose textfile collector reads what mdguard wrote,
# in a guest (`mdguard status --format=prometheus` over a prepared tree) and in
# dom0 (`mdguard host metrics --textfile` over the real xenstored of
# tests/xs). Provisions both (idempotent). Extra arguments go to the test binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/prom/provision.sh
bash tests/xs/provision.sh
cargo test --test prom_e2e -- --include-ignored "$@"
