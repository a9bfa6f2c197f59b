#!/usr/bin/env bash
# Build the .deb and the .rpm into target/packages/ and lint them (lintian,
# rpmlint; any error or warning fails). See README.md "Install".
#
#   packaging/build.sh [--no-lint]
#
# Env: MDGUARD_PKG_VERSION (default: Cargo.toml's version) and
#      MDGUARD_PKG_OUT (default target/packages): the install test builds a
#      newer-version copy of the same source this way for its upgrade check,
#      with MDGUARD_PKG_CONFIG (default packaging/mdguard.toml) as the config
#      file it ships.
#
# The binary is built once, statically linked against glibc (crt-static on
# x86_64-unknown-linux-gnu), so the packages carry no C library dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
. scripts/lib.sh
lint=1
[[ ${1:-} == --no-lint ]] && lint=0

die() { echo "build: $*" >&2; exit 1; }
apt_install debhelper dpkg-dev rpm lintian rpmlint file man-db
ensure_cargo

cargo_version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
version=${MDGUARD_PKG_VERSION:-$cargo_version}
out=${MDGUARD_PKG_OUT:-$repo/target/packages}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- the binary: static glibc -------------------------------------------------
triple=x86_64-unknown-linux-gnu
blog=$(mktemp)
trap 'rm -f "$blog"' EXIT
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --locked --release --target "$triple" --bin mdguard 2>&1 | tee "$blog"
bin=$repo/target/$triple/release/mdguard
# glibc's NSS cannot work in a static binary; the linker warns if any of it
# (getaddrinfo, getpwnam, ...) got linked in.
if grep -q 'statically linked applications requires at runtime' "$blog"; then
    die "the static binary uses glibc functions that need NSS at runtime (above)"
fi
file "$bin" | grep -Eq 'static-pie linked|statically linked' || die "$bin is not static: $(file "$bin")"
"$bin" version | grep -qx "mdguard $cargo_version" || die "$bin version: unexpected output"

# --- staging: the files both packages are made of ------------------------------
build=$out/build
rm -rf "$build"
stage=$build/mdguard-$version
mkdir -p "$stage/bin" "$stage/packaging" "$stage/systemd"
install -m 0755 "$bin" "$stage/bin/mdguard"
cp systemd/mdguard.service systemd/mdguard-host.service systemd/iscsi-reconnect.conf "$stage/systemd/"
cp "${MDGUARD_PKG_CONFIG:-packaging/mdguard.toml}" "$stage/packaging/mdguard.toml"
# the manuals (mdguard(8), mdguard.toml(5), mdguard-xenstore(7)), with this version
mkdir -p "$stage/packaging/man"
for page in packaging/man/*.[0-9]; do
    sed "s/\"mdguard [0-9][^\"]*\"/\"mdguard $version\"/" "$page" > "$stage/packaging/man/$(basename "$page")"
done
cp README.md LICENSE-MIT LICENSE-APACHE "$stage/"

# --- .deb: debhelper (enable-on-install scripts for the guest unit, conffiles, man page, docs) ----
cp -r packaging/debian "$stage/debian"
cp systemd/mdguard.service "$stage/debian/mdguard.service"
# the dom0 service, installed as mdguard-host.service (dh_installsystemd --name)
cp systemd/mdguard-host.service "$stage/debian/mdguard.mdguard-host.service"
# /etc/init.d/mdguard for sysvinit (and Debian's OpenRC, which runs it); the
# native OpenRC script as an example (Alpine, Gentoo)
cp packaging/init/mdguard.sysvinit "$stage/debian/mdguard.init"
mkdir -p "$stage/packaging/init"
cp packaging/init/mdguard.openrc "$stage/packaging/init/"
top=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
if [[ ${top%-*} != "$version" ]]; then
    # a test build of another version: a changelog entry for it, in the copy only
    { printf 'mdguard (%s-1) unstable; urgency=medium\n\n  * Test build of version %s (packaging/build.sh).\n\n -- %s  %s\n\n' \
        "$version" "$version" "$(sed -n 's/^Maintainer: //p' packaging/debian/control)" "$(date -R)"
      cat packaging/debian/changelog; } > "$stage/debian/changelog"
fi
(cd "$stage" && dpkg-buildpackage -b --no-sign -a amd64 >"$build/dpkg-buildpackage.log" 2>&1) ||
    { tail -40 "$build/dpkg-buildpackage.log"; die "dpkg-buildpackage failed (log: $build/dpkg-buildpackage.log)"; }
deb=$(ls "$build"/mdguard_"$version"-1_amd64.deb)
mv "$deb" "$out/"
deb=$out/$(basename "$deb")

# --- .rpm: rpmbuild with the staged files as sources ------------------------
rtop=$build/rpm
mkdir -p "$rtop"/{SOURCES,BUILD,RPMS,SPECS,BUILDROOT}
cp "$stage/bin/mdguard" "$stage/systemd/mdguard.service" "$stage/systemd/mdguard-host.service" \
    "$stage/systemd/iscsi-reconnect.conf" \
    "$stage/packaging/mdguard.toml" \
    "$stage"/packaging/man/* "$stage/README.md" "$stage/LICENSE-MIT" "$stage/LICENSE-APACHE" \
    packaging/rpm/80-mdguard.preset "$rtop/SOURCES/"
rpmbuild -bb --quiet \
    --define "_topdir $rtop" --define "pkgversion $version" --define "pkgrelease 1" \
    --define "_build_id_links none" \
    packaging/rpm/mdguard.spec >"$build/rpmbuild.log" 2>&1 ||
    { tail -40 "$build/rpmbuild.log"; die "rpmbuild failed (log: $build/rpmbuild.log)"; }
rpmfile=$(ls "$rtop"/RPMS/x86_64/mdguard-"$version"-1.x86_64.rpm)
mv "$rpmfile" "$out/"
rpmfile=$out/$(basename "$rpmfile")

# --- lint -----------------------------------------------------------------------
if (( lint )); then
    echo "build: lintian $deb"
    # errors and warnings fail; info and pedantic tags are shown for the record
    lintian --fail-on error,warning --display-info --pedantic \
        "$deb" ||
        die "lintian found problems (above)"
    echo "build: rpmlint $rpmfile"
    rlog=$(rpmlint -c packaging/rpm/rpmlint.toml "$rpmfile" 2>&1) || true
    echo "$rlog"
    echo "$rlog" | grep -Eq '^ *1 packages and 0 specfiles checked; 0 errors, 0 warnings,' ||
        die "rpmlint found problems (above)"
fi

size() { stat -c %s "$1"; }
echo "build: $deb ($(size "$deb") bytes)"
echo "build: $rpmfile ($(size "$rpmfile") bytes)"
echo "build: binary $(size "$bin") bytes, static; installed size $(dpkg-deb -f "$deb" Installed-Size) KiB"
