# Shared shell helpers for the project's scripts (sourced, not run).

# apt-get with retries: the registry can fail transiently.
apt_retry() {
  local i
  for i in 1 2 3 4 5; do
    if DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 "$@"; then
      return 0
    fi
    echo "apt-get $* failed (try $i), retrying in $((i * 5))s" >&2
    sleep $((i * 5))
  done
  return 1
}

# Install Debian packages that are not installed yet (idempotent).
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo bash -c "$(declare -f apt_retry); apt_retry update -q && apt_retry install -y -q --no-install-recommends ${missing[*]}"
}

# cargo from rustup if present; otherwise Debian's (older, but enough to build).
ensure_cargo() {
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v cargo >/dev/null; then
    echo "cargo not found: installing Debian's cargo (rustup gives a newer toolchain)" >&2
    apt_install cargo rustc
  fi
}
