# fish completion for banger-net
function __banger_net_vms
    set -l dir (set -q BANGER_STATE_DIR; and echo $BANGER_STATE_DIR; or echo /var/lib/banger)/vms
    test -d $dir; and ls $dir 2>/dev/null
end

set -l cmds up down list forward
complete -c banger-net -f
complete -c banger-net -n "not __fish_seen_subcommand_from $cmds" -a up -d 'give VMs their network'
complete -c banger-net -n "not __fish_seen_subcommand_from $cmds" -a down -d 'remove VMs\' networks'
complete -c banger-net -n "not __fish_seen_subcommand_from $cmds" -a list -d 'print every VM\'s network'
complete -c banger-net -n "not __fish_seen_subcommand_from $cmds" -a forward -d 'forward host ports to a VM'
complete -c banger-net -s h -l help -d 'print help'
complete -c banger-net -s V -l version -d 'print version'
complete -c banger-net -n "__fish_seen_subcommand_from up" -l dns -r -d 'DNS server for the guests'
complete -c banger-net -n "__fish_seen_subcommand_from down" -l keep-bridge -d 'keep the bridge and the NAT table'
complete -c banger-net -n "__fish_seen_subcommand_from list" -s t -l table -d 'a table for people'
complete -c banger-net -n "__fish_seen_subcommand_from forward" -s r -l remove -d 'remove the forwards'
complete -c banger-net -n "__fish_seen_subcommand_from up down forward" -a '(__banger_net_vms)'
