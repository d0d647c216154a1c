# fish completion for banger-image
function __banger_image_names
    command ls -1 (set -q BANGER_STATE_DIR; and echo $BANGER_STATE_DIR; or echo /var/lib/banger)/images 2>/dev/null
end

set -l cmds import build pull list rm
complete -c banger-image -f
complete -c banger-image -n "not __fish_seen_subcommand_from $cmds" -a import -d 'add an image from an ext4 rootfs and a vmlinux'
complete -c banger-image -n "not __fish_seen_subcommand_from $cmds" -a build -d 'build an image from a directory or Debian packages'
complete -c banger-image -n "not __fish_seen_subcommand_from $cmds" -a pull -d 'download an image verified by sha256'
complete -c banger-image -n "not __fish_seen_subcommand_from $cmds" -a list -d 'print the images'
complete -c banger-image -n "not __fish_seen_subcommand_from $cmds" -a rm -d 'remove images'
complete -c banger-image -s h -l help -d 'print help'
complete -c banger-image -s V -l version -d 'print version'
complete -c banger-image -n "__fish_seen_subcommand_from import" -s r -l rootfs -r -F -d 'ext4 root filesystem'
complete -c banger-image -n "__fish_seen_subcommand_from import build pull" -s k -l kernel -r -F -d 'ELF vmlinux'
complete -c banger-image -n "__fish_seen_subcommand_from import build pull" -l initrd -r -F -d 'initrd'
complete -c banger-image -n "__fish_seen_subcommand_from import build pull" -l boot-args -x -d 'kernel command line'
complete -c banger-image -n "__fish_seen_subcommand_from build" -l from-dir -x -a '(__fish_complete_directories)' -d 'make the rootfs from DIR'
complete -c banger-image -n "__fish_seen_subcommand_from build" -l debian -x -a 'bookworm trixie bullseye' -d 'debootstrap SUITE'
complete -c banger-image -n "__fish_seen_subcommand_from build" -l packages -x -d 'extra packages'
complete -c banger-image -n "__fish_seen_subcommand_from build" -l mirror -x -d 'Debian mirror'
complete -c banger-image -n "__fish_seen_subcommand_from build" -l size -x -d 'rootfs size'
complete -c banger-image -n "__fish_seen_subcommand_from build" -l no-agent -d 'no guest agent in a --debian image'
complete -c banger-image -n "__fish_seen_subcommand_from pull" -l sha256 -x -d 'expected sha256'
complete -c banger-image -n "__fish_seen_subcommand_from list" -s t -l table -d 'table for people'
complete -c banger-image -n "__fish_seen_subcommand_from rm" -a '(__banger_image_names)'
