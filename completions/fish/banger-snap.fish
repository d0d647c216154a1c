# fish completion for banger-snap
function __banger_snap_vms
    command ls -1 (set -q BANGER_STATE_DIR; and echo $BANGER_STATE_DIR; or echo /var/lib/banger)/vms 2>/dev/null
end

set -l cmds create rm list
complete -c banger-snap -f
complete -c banger-snap -n "not __fish_seen_subcommand_from $cmds" -a create -d 'give VMs their own copy-on-write disks'
complete -c banger-snap -n "not __fish_seen_subcommand_from $cmds" -a rm -d 'remove VM disks'
complete -c banger-snap -n "not __fish_seen_subcommand_from $cmds" -a list -d 'print the disks'
complete -c banger-snap -s h -l help -d 'print help'
complete -c banger-snap -s V -l version -d 'print version'
complete -c banger-snap -n "__fish_seen_subcommand_from create" -s m -l method -x -a 'dm-snapshot reflink copy' -d 'snapshot method'
complete -c banger-snap -n "__fish_seen_subcommand_from create" -l disk-size -x -d 'grow the disk to SIZE'
complete -c banger-snap -n "__fish_seen_subcommand_from create" -l no-agent -d 'do not write the guest agent'
complete -c banger-snap -n "__fish_seen_subcommand_from list" -s t -l table -d 'table for people'
complete -c banger-snap -n "__fish_seen_subcommand_from $cmds" -a '(__banger_snap_vms)'
