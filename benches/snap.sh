#!/usr/bin/env bash
# Benchmark: time to create one VM disk with `banger-snap create` by reflink and by copy,
# for a 1 GiB and a 4 GiB image (half full of incompressible data, so a copy has real
# blocks to move). Prints the numbers; asserts nothing. Needs root (a loop-mounted XFS).
#
#   sudo benches/snap.sh              # uses target/release if built, else target/debug
#   BANGER_BIN=path/to/bin REPS=5 sudo -E benches/snap.sh
#
# Everything lives under a temp dir (an XFS image loop-mounted there) and is removed on
# exit, mount and loop device included. A reflink clone must not grow with the image size.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BANGER_BIN:-}
if [ -z "$bin" ]; then
    if [ -x "$here/target/release/banger-snap" ]; then bin=$here/target/release; else bin=$here/target/debug; fi
fi
for b in banger-snap banger-vm banger-image; do
    [ -x "$bin/$b" ] || { echo "snap.sh: $bin/$b not built (cargo build --release)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "snap.sh: needs root (it loop-mounts an XFS)" >&2; exit 1; }
reps=${REPS:-3}
sizes=${SIZES:-"1 4"}

tmp=$(mktemp -d /tmp/banger-bench.XXXXXX)
mnt=$tmp/xfs
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || umount -l "$mnt"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

truncate -s 24G "$tmp/xfs.img"
mkfs.xfs -q -m reflink=1 "$tmp/xfs.img"
mkdir -p "$mnt"
mount -o loop "$tmp/xfs.img" "$mnt"

export PATH="$bin:$PATH"
export BANGER_STATE_DIR=$mnt/state BANGER_ROOT_DIR=$tmp/root BANGER_CONFIG_DIR=$tmp/etc
export BANGER_HELPER_SOCKET=$tmp/none.sock BANGER_RUN_DIR=$tmp/run
unset BANGER_OWNER_UID BANGER_OWNER_GID
mkdir -p "$BANGER_STATE_DIR" "$tmp/etc"
printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000\002\000\076\000\001\000\000\000' >"$tmp/vmlinux"
truncate -s 4096 "$tmp/vmlinux"

now() { date +%s.%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

used() { sync; df --output=used -B1M "$mnt" | tail -1 | tr -d ' '; }

printf '%-6s %-8s %12s %16s\n' IMAGE METHOD SECONDS "NEW-SPACE(MiB)"
for gib in $sizes; do
    img=img$gib
    tree=$tmp/tree$gib
    mkdir -p "$tree/data"
    head -c $((gib << 29)) /dev/urandom >"$tree/data/blob"
    mkfs.ext4 -q -F -d "$tree" "$tmp/$img.ext4" "${gib}G" >/dev/null 2>&1
    rm -rf "$tree"
    banger-image import "$img" --rootfs "$tmp/$img.ext4" --kernel "$tmp/vmlinux" >/dev/null
    rm -f "$tmp/$img.ext4"
    for method in reflink copy; do
        times=() spaces=()
        # The disks stay until every run of this method is measured: freed blocks are
        # returned lazily, which would blur the next run's space figure.
        for r in $(seq 1 "$reps"); do
            vm=b$gib-$method-$r
            banger-vm new "$vm" --image "$img" >/dev/null
            before=$(used)
            t0=$(now)
            banger-snap create --method "$method" "$vm" >/dev/null 2>&1
            t1=$(now)
            times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
            spaces+=($(($(used) - before)))
        done
        for r in $(seq 1 "$reps"); do
            banger-snap rm "b$gib-$method-$r" >/dev/null
            banger-vm rm "b$gib-$method-$r" >/dev/null
        done
        newspace=$(printf '%s\n' "${spaces[@]}" | median)
        printf '%-6s %-8s %12.3f %16s\n' "${gib}G" "$method" "$(printf '%s\n' "${times[@]}" | median)" "$newspace"
    done
    banger-image rm "$img"
done
echo "(seconds: median of $reps runs of banger-snap create, including writing the VM's identity"
echo " into the disk with debugfs; new space: the XFS's used space after minus before, median)"
