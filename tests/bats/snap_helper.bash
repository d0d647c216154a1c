# Helpers for snap.bats and image.bats. Load after test_helper.
#
# Tiny images: an ext4 rootfs made with mkfs.ext4 -d and a fake kernel (a 64-bit x86_64
# ELF executable header: enough for import's checks, not bootable). Reflink tests put the
# state dir on a loop-mounted XFS made in the test's temp dir; snap_teardown unmounts it
# (the loop device goes with it: mount -o loop sets autoclear) and detaches only loop
# devices backed by this test's files.

# fake_kernel FILE: an ELF64 little-endian x86_64 ET_EXEC header, padded to 4 KiB.
fake_kernel() {
    {
        printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000'
        printf '\002\000\076\000\001\000\000\000'
        head -c 40 /dev/zero
    } >"$1"
    truncate -s 4096 "$1"
}

# fake_bzimage FILE: a file with the bzImage "HdrS" magic at 0x202.
fake_bzimage() {
    head -c 1024 /dev/zero >"$1"
    printf 'HdrS' | dd of="$1" bs=1 seek=$((0x202)) conv=notrunc status=none
}

# tiny_rootfs FILE [SIZE]: an ext4 image with /etc/hostname and /etc/ssh/ssh_host_rsa_key
# (a stand-in for an image that ships host keys, which clones must not keep).
tiny_rootfs() {
    local d
    d=$(mktemp -d "$BATS_TEST_TMPDIR/tree.XXXXXX")
    mkdir -p "$d/etc/ssh" "$d/root"
    echo image >"$d/etc/hostname"
    echo "a banger test image" >"$d/etc/motd"
    echo "not a real key" >"$d/etc/ssh/ssh_host_rsa_key"
    mkfs.ext4 -q -F -d "$d" "$1" "${2:-16M}"
    rm -rf "$d"
}

# make_image NAME [SIZE]: imports a tiny image into the store.
make_image() {
    tiny_rootfs "$BATS_TEST_TMPDIR/$1.ext4" "${2:-16M}"
    fake_kernel "$BATS_TEST_TMPDIR/$1.vmlinux"
    banger-image import "$1" --rootfs "$BATS_TEST_TMPDIR/$1.ext4" --kernel "$BATS_TEST_TMPDIR/$1.vmlinux" >/dev/null
}

# prepared_from STORED ORIGINAL: STORED (an image's rootfs.ext4 in the store) is ORIGINAL
# with the identity slots put in at import: a clean filesystem, slots.json beside it, the
# placeholder in /etc/hostname, the rest as it was (/etc/motd).
prepared_from() {
    e2fsck -fn "$1" >/dev/null
    jq -e '.v == 1' "$(dirname "$1")/slots.json" >/dev/null
    [ "$(guest_cat "$1" /etc/hostname | head -c 13)" = "#banger-slot " ]
    [ "$(guest_cat "$1" /etc/motd)" = "$(guest_cat "$2" /etc/motd)" ]
}

# guest_cat DISK PATH: a file from inside an ext4 image, read with debugfs (no mount).
guest_cat() {
    debugfs -R "cat $2" "$1" 2>/dev/null
}

# ledger_count [VM]: how many ledger entries (of VM) the helper has.
ledger_count() {
    if [ -n "${1:-}" ]; then
        ledger_jq --arg vm "$1" '[.entries[] | select(.vm == $vm)] | length'
    else
        ledger_jq '.entries | length'
    fi
}

# loops_of DIR: loop devices whose backing file lies under DIR.
loops_of() {
    losetup --list --noheadings --output NAME,BACK-FILE 2>/dev/null | awk -v d="$1" 'index($2, d) == 1 { print $1 }'
}

# xfs_state [SIZE]: the state dir on a fresh loop-mounted XFS with reflink.
xfs_state() {
    XFS_IMG="$BATS_TEST_TMPDIR/xfs.img"
    XFS_MNT="$BATS_TEST_TMPDIR/xfs"
    truncate -s "${1:-512M}" "$XFS_IMG"
    mkfs.xfs -q -m reflink=1 "$XFS_IMG"
    mkdir -p "$XFS_MNT"
    mount -o loop "$XFS_IMG" "$XFS_MNT"
    export BANGER_STATE_DIR="$XFS_MNT/state"
    mkdir -p "$BANGER_STATE_DIR"
}

dm_works() {
    [ -e /dev/mapper/control ] && dmsetup version >/dev/null 2>&1
}

snap_teardown() {
    banger_teardown
    local l
    # dm devices and loops this test made (the ledger is the record of them).
    if [ -f "${BANGER_ROOT_DIR:-/nonexistent}/ledger.json" ]; then
        for l in $(ledger_jq -r '.entries[] | select(.kind == "dm") | .id'); do
            dmsetup remove "$l" 2>/dev/null || true
        done
    fi
    for l in $(loops_of "$BATS_TEST_TMPDIR"); do losetup -d "$l" 2>/dev/null || true; done
    if [ -n "${XFS_MNT:-}" ] && mountpoint -q "$XFS_MNT"; then
        for l in $(loops_of "$XFS_MNT"); do losetup -d "$l" 2>/dev/null || true; done
        umount "$XFS_MNT" || umount -l "$XFS_MNT"
    fi
    for l in $(loops_of "$BATS_TEST_TMPDIR"); do losetup -d "$l" 2>/dev/null || true; done
    return 0
}
