# fish completion for banger-jail
function __banger_jail_names
    command ls -1 (set -q BANGER_STATE_DIR; and echo $BANGER_STATE_DIR; or echo /var/lib/banger)/vms 2>/dev/null
end
set -l cmds launch teardown list
complete -c banger-jail -f
complete -c banger-jail -s h -l help -d 'print help'
complete -c banger-jail -s V -l version -d 'print version'
complete -c banger-jail -n "not __fish_seen_subcommand_from $cmds" -a launch -d 'stage the chroot and start Firecracker'
complete -c banger-jail -n "not __fish_seen_subcommand_from $cmds" -a teardown -d 'stop Firecracker, remove the chroot'
complete -c banger-jail -n "not __fish_seen_subcommand_from $cmds" -a list -d 'print the jails the helper holds'
complete -c banger-jail -n '__fish_seen_subcommand_from launch' -s l -l launcher -x -a 'jailer direct' -d 'how to run Firecracker'
complete -c banger-jail -n '__fish_seen_subcommand_from launch' -l timeout -x -d 'seconds to wait for the API'
complete -c banger-jail -n '__fish_seen_subcommand_from teardown' -l grace -x -d 'seconds between SIGTERM and SIGKILL'
complete -c banger-jail -n '__fish_seen_subcommand_from launch teardown' -a '(__banger_jail_names)'
