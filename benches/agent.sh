#!/usr/bin/env bash
# Benchmark: the guest agent's protocol cost, host side included: `banger-vm exec` of a
# command that does nothing, `banger-vm status` (one hello), and `banger-vm cp` of 10 MiB in
# and out. The guest is the TEST STAND-IN's: the Firecracker stand-in, launched directly, runs
# the host build of banger-agent on each vsock connection, so this measures banger and the
# agent, not a guest kernel (see vm-slow.bats for a real guest). Prints numbers; asserts
# nothing. Needs root.
#
#   sudo benches/agent.sh          # REPS=30 by default
#
# In process (no helper daemon), all state under a temp dir removed on exit; the VM it starts
# is torn down.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BANGER_BIN:-}
if [ -z "$bin" ]; then
    if [ -x "$here/target/release/banger-vm" ]; then bin=$here/target/release; else bin=$here/target/debug; fi
fi
for b in banger-vm banger-snap banger-jail banger-image banger-agent; do
    [ -x "$bin/$b" ] || { echo "agent.sh: $bin/$b not built (cargo build --release --workspace)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "agent.sh: needs root" >&2; exit 1; }
# What standin_links sets (declared here so the script reads whole without following the
# source).
fc="" jailer=""
# shellcheck source=benches/standin.bash
. "$here/benches/standin.bash"
standin_links "$bin" "$here" || exit 1
reps=${REPS:-30}

tmp=$(mktemp -d /tmp/banger-agent-bench.XXXXXX)
chmod 0755 "$tmp"
cleanup() {
    "$bin/banger-vm" kill a1 2>/dev/null | "$bin/banger-jail" teardown >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
export PATH="$bin:$PATH"
export BANGER_STATE_DIR=$tmp/state BANGER_RUN_DIR=$tmp/run BANGER_CONFIG_DIR=$tmp/etc
export BANGER_ROOT_DIR=$tmp/root BANGER_JAIL_DIR=$tmp/jail BANGER_HELPER_SOCKET=$tmp/none.sock
export BANGER_FIRECRACKER=$fc BANGER_JAILER=$jailer BANGER_OWNER_UID=${BANGER_OWNER_UID:-4343}
export BANGER_BOOT_ARGS_EXTRA="standin.agent=$bin/banger-agent"
mkdir -p "$tmp/tree/etc" "$tmp/guest" "$BANGER_CONFIG_DIR"
echo bench >"$tmp/tree/etc/hostname"
mkfs.ext4 -q -F -d "$tmp/tree" "$tmp/rootfs.ext4" 16M
{
    printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000\002\000\076\000\001\000\000\000'
    head -c 40 /dev/zero
} >"$tmp/vmlinux"
truncate -s 4096 "$tmp/vmlinux"
banger-image import bench --rootfs "$tmp/rootfs.ext4" --kernel "$tmp/vmlinux" >/dev/null
chmod -R a+rX "$BANGER_STATE_DIR"
chown "$BANGER_OWNER_UID" "$tmp/guest"
banger-vm new a1 --image bench | banger-snap create --no-agent 2>/dev/null |
    banger-jail launch --launcher direct | banger-vm start --wait agent --timeout 20 >/dev/null

now_ms() { date +%s%3N; }
stats() { sort -n | awk '{a[NR]=$1; s+=$1} END {printf "mean %6.1f ms  median %4d ms  min %4d ms  max %4d ms  (n=%d)\n", s/NR, a[int((NR+1)/2)], a[1], a[NR], NR}'; }
measure() {
    local label=$1 t0 _
    shift
    for _ in $(seq 1 "$reps"); do
        t0=$(now_ms)
        "$@" >/dev/null
        echo $(($(now_ms) - t0))
    done | stats | sed "s/^/$label /"
}

echo "banger agent benchmark: stand-in guest (the host build of banger-agent), $reps runs each, $bin"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$tmp/blob"
measure "exec true (agent)      " banger-vm exec --via agent a1 -- true
measure "status (one hello)     " banger-vm status a1
measure "cp 10 MiB into guest   " banger-vm cp "$tmp/blob" "a1:$tmp/guest/blob"
measure "cp 10 MiB out of guest " banger-vm cp "a1:$tmp/guest/blob" "$tmp/back"
cmp "$tmp/blob" "$tmp/back"
