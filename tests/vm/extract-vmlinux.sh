#!/bin/bash
# extract-vmlinux.sh VMLINUZ > vmlinux
#
# A bzImage is a small decompressor followed by the compressed kernel ELF.
# Find every offset where a known compression magic occurs, try to decompress
# from there, and keep the first result that is an ELF file.  (Same idea as
# the kernel's scripts/extract-vmlinux; written for this project.)
set -euo pipefail
img=${1:?usage: extract-vmlinux.sh VMLINUZ}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

is_elf() { [[ $(head -c4 "$1" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]; }

# try MAGIC_HEX DECOMPRESSOR...: decompress from each offset where MAGIC occurs.
try() {
    local magic=$1; shift
    local off
    # grep -obUaP gives byte offsets of the binary pattern.
    for off in $(LC_ALL=C grep -obUaP "$magic" "$img" 2>/dev/null | cut -d: -f1); do
        tail -c +$((off + 1)) "$img" | "$@" > "$tmp/out" 2>/dev/null || true
        if [[ -s $tmp/out ]] && is_elf "$tmp/out"; then
            cat "$tmp/out"
            return 0
        fi
    done
    return 1
}

try '\x28\xb5\x2f\xfd' zstd -dc ||
try '\xfd\x37\x7a\x58\x5a\x00' xz -dc ||
try '\x1f\x8b\x08' gzip -dc ||
try '\x5d\x00\x00' xz --format=lzma -dc ||
try 'BZh' bzip2 -dc ||
try '\x02\x21\x4c\x18' lz4 -dc ||
try '\x89\x4c\x5a\x4f' lzop -dc ||
{ echo "extract-vmlinux: no compressed ELF kernel found in $img" >&2; exit 1; }
