#!/usr/bin/env bats
# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
# banger-image as a user runs it: import's checks, build --from-dir, pull (verified before
# it becomes visible), list, rm (refused while a VM's disk depends on the image), and
# build --debian behind its own switch.

load test_helper
load snap_helper

bats_require_minimum_version 1.5.0

setup() {
    banger_env
}

teardown() {
    snap_teardown
}

@test "image import: an ext4 rootfs and an ELF vmlinux, with sizes and sha256 in image.json" {
    tiny_rootfs "$BATS_TEST_TMPDIR/r.ext4"
    fake_kernel "$BATS_TEST_TMPDIR/vmlinux"
    echo initrd >"$BATS_TEST_TMPDIR/initrd"
    run --separate-stderr banger-image import base --rootfs "$BATS_TEST_TMPDIR/r.ext4" --kernel "$BATS_TEST_TMPDIR/vmlinux" --initrd "$BATS_TEST_TMPDIR/initrd" --boot-args "console=ttyS0 quiet"
    assert_success
    echo "$output" | jq -e '.v == 1 and .type == "image" and .name == "base" and .boot_args == "console=ttyS0 quiet"'
    echo "$output" | jq -e '.source.kind == "import" and (.created_at | test("^[0-9]{4}-"))'
    local d="$BANGER_STATE_DIR/images/base" f
    for f in vmlinux initrd; do cmp "$d/$f" "$BATS_TEST_TMPDIR/$f"; done
    # The rootfs is the one given with its identity slots put in (issue 14): a clean ext4
    # with the same content otherwise, and the map beside it.
    prepared_from "$d/rootfs.ext4" "$BATS_TEST_TMPDIR/r.ext4"
    jq -e '(.slots | length) >= 10' "$d/slots.json"
    for f in rootfs.ext4 vmlinux initrd; do
        [ "$(jq -r --arg f "$f" '.files[$f].sha256' "$d/image.json")" = "$(sha256sum "$d/$f" | cut -d' ' -f1)" ]
        [ "$(jq -r --arg f "$f" '.files[$f].size' "$d/image.json")" -eq "$(stat -c %s "$d/$f")" ]
    done
    run banger-image list
    assert_success
    echo "$output" | jq -e '.name == "base"'
    run banger-image list --table
    assert_line --index 0 --regexp '^NAME +SIZE +INITRD +SOURCE +WARM +CREATED$'
    assert_line --index 1 --regexp '^base +16M +yes +import +no '
    # Default boot args.
    run --separate-stderr banger-image import other --rootfs "$BATS_TEST_TMPDIR/r.ext4" --kernel "$BATS_TEST_TMPDIR/vmlinux"
    echo "$output" | jq -e '.boot_args == "console=ttyS0 reboot=k panic=1 pci=off" and (.files | has("initrd") | not)'
}

@test "image import: a bzImage, garbage, a non-kernel ELF or a non-ext4 rootfs get clear errors and leave nothing" {
    tiny_rootfs "$BATS_TEST_TMPDIR/r.ext4"
    fake_kernel "$BATS_TEST_TMPDIR/vmlinux"
    fake_bzimage "$BATS_TEST_TMPDIR/bzImage"
    run banger-image import a --rootfs "$BATS_TEST_TMPDIR/r.ext4" --kernel "$BATS_TEST_TMPDIR/bzImage"
    assert_failure 1
    assert_output --partial "is a bzImage"
    assert_output --partial "pass the uncompressed ELF vmlinux"
    assert_output --partial "extract-vmlinux"
    echo garbage >"$BATS_TEST_TMPDIR/junk"
    run banger-image import a --rootfs "$BATS_TEST_TMPDIR/r.ext4" --kernel "$BATS_TEST_TMPDIR/junk"
    assert_failure 1
    assert_output --partial "not an ELF file"
    run banger-image import a --rootfs "$BATS_TEST_TMPDIR/r.ext4" --kernel "$(type -P true)"
    assert_failure 1
    assert_output --partial "is an ELF file but not a x86_64 kernel vmlinux"
    run banger-image import a --rootfs "$BATS_TEST_TMPDIR/junk" --kernel "$BATS_TEST_TMPDIR/vmlinux"
    assert_failure 1
    assert_output --partial "is not an ext4 image"
    run banger-image import a --rootfs "$BATS_TEST_TMPDIR/missing" --kernel "$BATS_TEST_TMPDIR/vmlinux"
    assert_failure 1
    assert_output --partial "cannot read $BATS_TEST_TMPDIR/missing"
    run banger-image list
    assert_output ""
    [ -z "$(ls -A "$BANGER_STATE_DIR/images" 2>/dev/null)" ]
}

@test "image import: usage errors and a taken or invalid name" {
    run banger-image import a --rootfs x
    assert_failure 2
    assert_output --partial "--kernel FILE are required"
    run banger-image import --bogus
    assert_failure 2
    run banger-image list extra
    assert_failure 2
    make_image base
    run banger-image import base --rootfs "$BATS_TEST_TMPDIR/base.ext4" --kernel "$BATS_TEST_TMPDIR/base.vmlinux"
    assert_failure 1
    assert_output --partial 'an image named "base" already exists'
    run banger-image import Bad_Name --rootfs "$BATS_TEST_TMPDIR/base.ext4" --kernel "$BATS_TEST_TMPDIR/base.vmlinux"
    assert_failure 1
    assert_output --partial "invalid image name"
}

@test "image import: reflinks the files into a store on XFS" {
    require_root
    xfs_state
    tiny_rootfs "$BATS_TEST_TMPDIR/xfs/r.ext4" 64M
    fake_kernel "$BATS_TEST_TMPDIR/vmlinux"
    local before after
    before=$(df --output=used -B1 "$XFS_MNT" | tail -1)
    banger-image import base --rootfs "$BATS_TEST_TMPDIR/xfs/r.ext4" --kernel "$BATS_TEST_TMPDIR/vmlinux" >/dev/null
    after=$(df --output=used -B1 "$XFS_MNT" | tail -1)
    # A copy would use the image's allocated blocks again; a reflink only metadata.
    [ $((after - before)) -lt $((4 << 20)) ]
    prepared_from "$BANGER_STATE_DIR/images/base/rootfs.ext4" "$BATS_TEST_TMPDIR/xfs/r.ext4"
}

@test "image build --from-dir: an ext4 image of the tree, sized to fit, no mount" {
    mkdir -p "$BATS_TEST_TMPDIR/tree/etc" "$BATS_TEST_TMPDIR/tree/usr/bin"
    echo hello >"$BATS_TEST_TMPDIR/tree/etc/motd"
    head -c 3M /dev/urandom >"$BATS_TEST_TMPDIR/tree/usr/bin/big"
    fake_kernel "$BATS_TEST_TMPDIR/vmlinux"
    run --separate-stderr banger-image build small --from-dir "$BATS_TEST_TMPDIR/tree" --kernel "$BATS_TEST_TMPDIR/vmlinux"
    assert_success
    echo "$output" | jq -e '.source.kind == "dir" and .files["rootfs.ext4"].size >= 67108864'
    local img="$BANGER_STATE_DIR/images/small/rootfs.ext4"
    [ "$(guest_cat "$img" /etc/motd)" = "hello" ]
    cmp <(guest_cat "$img" /usr/bin/big) "$BATS_TEST_TMPDIR/tree/usr/bin/big"
    debugfs -R "stat /" "$img" 2>/dev/null | grep -q "User:     0   Group:     0"
    e2fsck -fn "$img"
    # --size; too small a size is mkfs's clear error; --from-dir needs --kernel.
    run --separate-stderr banger-image build sized --from-dir "$BATS_TEST_TMPDIR/tree" --kernel "$BATS_TEST_TMPDIR/vmlinux" --size 100M
    echo "$output" | jq -e '.files["rootfs.ext4"].size == 104857600'
    run banger-image build tiny --from-dir "$BATS_TEST_TMPDIR/tree" --kernel "$BATS_TEST_TMPDIR/vmlinux" --size 1M
    assert_failure 1
    assert_output --partial "mkfs.ext4"
    [ ! -e "$BANGER_STATE_DIR/images/tiny" ]
    run banger-image build x --from-dir "$BATS_TEST_TMPDIR/tree"
    assert_failure 2
    assert_output --partial "--kernel FILE is required"
    run banger-image build x --from-dir "$BATS_TEST_TMPDIR/tree" --debian bookworm
    assert_failure 2
    run banger-image build x --from-dir "$BATS_TEST_TMPDIR/nope" --kernel "$BATS_TEST_TMPDIR/vmlinux"
    assert_failure 1
    assert_output --partial "is not a directory"
}

@test "image pull: a tar archive by file:// and by path, verified by sha256" {
    mkdir -p "$BATS_TEST_TMPDIR/art"
    tiny_rootfs "$BATS_TEST_TMPDIR/art/rootfs.ext4"
    fake_kernel "$BATS_TEST_TMPDIR/art/vmlinux"
    echo '{"boot_args": "console=ttyS0 from-archive"}' >"$BATS_TEST_TMPDIR/art/image.json"
    tar -C "$BATS_TEST_TMPDIR/art" -czf "$BATS_TEST_TMPDIR/img.tar.gz" rootfs.ext4 vmlinux image.json
    local sum
    sum=$(sha256sum "$BATS_TEST_TMPDIR/img.tar.gz" | cut -d' ' -f1)
    run --separate-stderr banger-image pull a "file://$BATS_TEST_TMPDIR/img.tar.gz" --sha256 "$sum"
    assert_success
    echo "$output" | jq -e --arg s "$sum" '.source.kind == "pull" and .source.sha256 == $s and .boot_args == "console=ttyS0 from-archive"'
    prepared_from "$BANGER_STATE_DIR/images/a/rootfs.ext4" "$BATS_TEST_TMPDIR/art/rootfs.ext4"
    cmp "$BANGER_STATE_DIR/images/a/vmlinux" "$BATS_TEST_TMPDIR/art/vmlinux"
    [ ! -e "$BANGER_STATE_DIR/images/a/image.json.orig" ]
    run --separate-stderr banger-image pull b "$BATS_TEST_TMPDIR/img.tar.gz" --sha256 "${sum^^}"
    assert_success
    # A bare ext4 image with --kernel.
    sum=$(sha256sum "$BATS_TEST_TMPDIR/art/rootfs.ext4" | cut -d' ' -f1)
    run banger-image pull c "$BATS_TEST_TMPDIR/art/rootfs.ext4" --sha256 "$sum"
    assert_failure 1
    assert_output --partial "give its kernel with --kernel FILE"
    run --separate-stderr banger-image pull c "$BATS_TEST_TMPDIR/art/rootfs.ext4" --sha256 "$sum" --kernel "$BATS_TEST_TMPDIR/art/vmlinux"
    assert_success
    [ "$(banger-image list | jq -r .name | paste -sd,)" = "a,b,c" ]
}

@test "image pull: a wrong sum, an unreachable URL or a bad archive leave nothing behind" {
    mkdir -p "$BATS_TEST_TMPDIR/art"
    tiny_rootfs "$BATS_TEST_TMPDIR/art/rootfs.ext4"
    fake_kernel "$BATS_TEST_TMPDIR/art/vmlinux"
    tar -C "$BATS_TEST_TMPDIR/art" -cf "$BATS_TEST_TMPDIR/img.tar" rootfs.ext4 vmlinux
    run banger-image pull a "$BATS_TEST_TMPDIR/img.tar" --sha256 "$(printf '0%.0s' $(seq 1 64))"
    assert_failure 1
    assert_output --partial "sha256 mismatch"
    assert_output --partial "nothing was kept"
    run banger-image pull a "https://127.0.0.1:9/img.tar" --sha256 "$(printf '0%.0s' $(seq 1 64))"
    assert_failure 1
    assert_output --partial "cannot download https://127.0.0.1:9/img.tar"
    echo junk >"$BATS_TEST_TMPDIR/junk"
    run banger-image pull a "$BATS_TEST_TMPDIR/junk" --sha256 "$(sha256sum "$BATS_TEST_TMPDIR/junk" | cut -d' ' -f1)"
    assert_failure 1
    assert_output --partial "neither an ext4 image nor a tar archive"
    tar -C "$BATS_TEST_TMPDIR/art" -cf "$BATS_TEST_TMPDIR/nokernel.tar" rootfs.ext4
    run banger-image pull a "$BATS_TEST_TMPDIR/nokernel.tar" --sha256 "$(sha256sum "$BATS_TEST_TMPDIR/nokernel.tar" | cut -d' ' -f1)"
    assert_failure 1
    assert_output --partial "no vmlinux"
    [ -z "$(ls -A "$BANGER_STATE_DIR/images" 2>/dev/null)" ]
    run banger-image pull a "$BATS_TEST_TMPDIR/img.tar" --sha256 xyz
    assert_failure 2
    run banger-image pull a "$BATS_TEST_TMPDIR/img.tar"
    assert_failure 2
    assert_output --partial "--sha256 HEX is required"
}

@test "image rm: refused while a VM's disk depends on it, naming the VMs; then removed" {
    require_root
    make_image base
    banger-vm new a --image base >/dev/null
    banger-vm new b --image base >/dev/null
    banger-snap create a b >/dev/null 2>&1
    run banger-image rm base
    assert_failure 1
    assert_output --partial 'image "base" is used by a b'
    [ -f "$BANGER_STATE_DIR/images/base/rootfs.ext4" ]
    banger-snap rm a b >/dev/null
    run banger-image rm base
    assert_success
    [ ! -e "$BANGER_STATE_DIR/images/base" ]
    run banger-image rm base
    assert_failure 1
    assert_output --partial 'no image named "base"'
}

@test "image build --debian: a bootable default image from the distribution's packages (BANGER_TEST_DEBOOTSTRAP=1)" {
    [ "${BANGER_TEST_DEBOOTSTRAP:-}" = 1 ] || skip "SKIPPED: set BANGER_TEST_DEBOOTSTRAP=1 to run debootstrap (minutes, needs a Debian mirror)"
    require_root
    command -v debootstrap >/dev/null || skip "SKIPPED LOUDLY: debootstrap is not installed"
    local mirror
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
        grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]*debian[^ ]*' | grep -v -- -security | head -1)
    curl -fsS --max-time 10 -o /dev/null "${mirror:-http://deb.debian.org/debian}/dists/bookworm/Release" ||
        skip "SKIPPED LOUDLY: no Debian mirror reachable (${mirror:-http://deb.debian.org/debian})"
    run --separate-stderr banger-image build default --debian bookworm
    assert_success
    echo "$output" | jq -e '.source.kind == "debian" and (.boot_args | contains("init=/sbin/banger-init"))'
    local d="$BANGER_STATE_DIR/images/default"
    # The result passes import's own checks.
    run --separate-stderr banger-image import again --rootfs "$d/rootfs.ext4" --kernel "$d/vmlinux"
    assert_success
    guest_cat "$d/rootfs.ext4" /sbin/banger-init | head -1 | grep -qx '#!/bin/sh'
    debugfs -R "stat /usr/sbin/sshd" "$d/rootfs.ext4" 2>/dev/null | grep -q "Type: regular"
    # No host key in the image: the only ssh_host_ files are the identity slots' placeholders
    # (import prepares them; snap create writes each VM's own keys into them), holding
    # nothing but their marker lines.
    local f keys
    keys=$(debugfs -R "ls /etc/ssh" "$d/rootfs.ext4" 2>/dev/null | grep -oE 'ssh_host_[a-z0-9_]+(\.pub)?' | sort -u)
    for f in $keys; do
        jq -e --arg p "/etc/ssh/$f" 'any(.slots[]; .path == $p)' "$d/slots.json" >/dev/null ||
            { echo "/etc/ssh/$f is in the image and is no slot" >&2; false; }
        guest_cat "$d/rootfs.ext4" "/etc/ssh/$f" | head -1 | grep -qE "^#banger-slot [0-9a-f]+ /etc/ssh/$f 0\$"
        run bash -c "debugfs -R 'cat /etc/ssh/$f' '$d/rootfs.ext4' 2>/dev/null | grep -v '^\$' | grep -vE '^#banger-slot [0-9a-f]+ /etc/ssh/$f [0-9]+\$'"
        assert_output ""
    done
}

@test "image build --debian: debootstrap's own reason is in the error, whichever stream it used (issue 13, item 5)" {
    require_root
    command -v debootstrap >/dev/null || skip "debootstrap is not installed"
    # The real debootstrap: an unknown suite fails at once, saying why on stdout.
    run --separate-stderr banger-image build x --debian nosuchsuite --mirror http://127.0.0.1:9/debian
    assert_failure 1
    [[ "$stderr" == *"debootstrap"*"failed: exit status: 1; its last words:"* ]]
    [[ "$stderr" == *"E: No such script: /usr/share/debootstrap/scripts/nosuchsuite"* ]]
    assert_output ""
    [ ! -e "$BANGER_STATE_DIR/images/x" ]
}

@test "image build --debian: progress on stderr when it is not a terminal, a line per phase, not per package (issue 13, item 12)" {
    require_root
    # A stand-in debootstrap (first on PATH) that talks as debootstrap does, then fails.
    mkdir -p "$BATS_TEST_TMPDIR/fake"
    cat >"$BATS_TEST_TMPDIR/fake/debootstrap" <<'SH'
#!/bin/sh
echo "I: Retrieving InRelease"
echo "I: Checking Release signature"
for p in base-files bash coreutils dpkg libc6 tar; do echo "I: Retrieving $p"; done
for p in base-files bash coreutils dpkg libc6 tar; do echo "I: Extracting $p..."; done
echo "W: a warning on stderr" >&2
echo "E: Couldn't find these debs: nosuchpkg"
exit 1
SH
    chmod +x "$BATS_TEST_TMPDIR/fake/debootstrap"
    run --separate-stderr env PATH="$BATS_TEST_TMPDIR/fake:$PATH" banger-image build x --debian bookworm --mirror http://127.0.0.1:9/debian
    assert_failure 1
    [[ "$stderr" == *"banger-image: debootstrap bookworm from http://127.0.0.1:9/debian (takes minutes)"* ]]
    # A line when the phase changes (Retrieving, Checking, Retrieving, Extracting, ...), not
    # one per package.
    local shown
    shown=$(grep '^banger-image: debootstrap ([0-9]* s): ' <<<"$stderr")
    [ "$(grep -c 'I: Retrieving' <<<"$shown")" -eq 2 ]
    [ "$(grep -c 'I: Extracting' <<<"$shown")" -eq 1 ]
    [[ "$stderr" == *"banger-image: debootstrap failed after"* ]]
    # The error quotes its last lines, stdout's and stderr's.
    [[ "$stderr" == *"E: Couldn't find these debs: nosuchpkg"* ]]
    [[ "$stderr" == *"W: a warning on stderr"* ]]
}

@test "image import/rm on a terminal: a summary for people, not the record; --json gives the record (issue 13, item 9)" {
    command -v script >/dev/null || skip "script (util-linux) is not installed"
    tiny_rootfs "$BATS_TEST_TMPDIR/r.ext4"
    fake_kernel "$BATS_TEST_TMPDIR/vmlinux"
    run script -qec "banger-image import base --rootfs $BATS_TEST_TMPDIR/r.ext4 --kernel $BATS_TEST_TMPDIR/vmlinux" /dev/null
    assert_success
    assert_output --partial "image base: a 16 MiB root filesystem and a kernel (from import)"
    assert_output --partial "boot it: banger up NAME --image base"
    refute_output --partial '"sha256"'
    run script -qec "banger-image import other --json --rootfs $BATS_TEST_TMPDIR/r.ext4 --kernel $BATS_TEST_TMPDIR/vmlinux" /dev/null
    assert_output --partial '"type":"image"'
    run script -qec "banger-image rm base" /dev/null
    assert_success
    assert_output --partial "image base: removed"
}

@test "image import: a large copy shows its progress on stderr (issue 13, item 12)" {
    tiny_rootfs "$BATS_TEST_TMPDIR/big.ext4" 80M
    fake_kernel "$BATS_TEST_TMPDIR/vmlinux"
    run --separate-stderr banger-image import big --rootfs "$BATS_TEST_TMPDIR/big.ext4" --kernel "$BATS_TEST_TMPDIR/vmlinux"
    assert_success
    # A reflink needs no progress; a copy (and every checksum of a large file) has it.
    [[ "$stderr" == *"banger-image: checksumming $BANGER_STATE_DIR/images/"*"rootfs.ext4 (80 MiB)"* ]]
    [[ "$stderr" == *"done after"* ]]
}

@test "image import as root for the owner: an owner who swaps the staging directory for a symlink gets nothing of root's handed over through it" {
    require_root
    tiny_rootfs "$BATS_TEST_TMPDIR/r.ext4"
    fake_kernel "$BATS_TEST_TMPDIR/vmlinux"
    local victim="$BATS_TEST_TMPDIR/victim" f
    mkdir -m 0755 "$victim"
    echo secret >"$victim/keep"
    # The owner's move, played by a test hook the moment the staging directory exists: it
    # goes aside and a symlink to root's directory takes its name.
    # shellcheck disable=SC2016 # $1 is the hook's own argument
    BANGER_OWNER_UID=4343 BANGER_OWNER_GID=4343 \
        BANGER_TEST_STAGED_HOOK='mv "$1" "$1.away" && ln -s '"$victim"' "$1"' \
        run --separate-stderr banger-image import base --rootfs "$BATS_TEST_TMPDIR/r.ext4" --kernel "$BATS_TEST_TMPDIR/vmlinux"
    # Whatever became of the import, root's directory and all in it are still root's.
    [ "$(stat -c %u:%g "$victim")" = 0:0 ]
    for f in "$victim"/*; do
        [ "$(stat -c %u "$f")" -eq 0 ] || { echo "$f was handed over" >&2; false; }
    done
}
