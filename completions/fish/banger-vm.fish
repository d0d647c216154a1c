# fish completion for banger-vm
function __banger_vm_names
    command ls -1 (set -q BANGER_STATE_DIR; and echo $BANGER_STATE_DIR; or echo /var/lib/banger)/vms 2>/dev/null
end
function __banger_vm_images
    command ls -1 (set -q BANGER_STATE_DIR; and echo $BANGER_STATE_DIR; or echo /var/lib/banger)/images 2>/dev/null
end
set -l cmds new list status start stop kill pause resume wait console ssh exec cp snapshot restore rm
complete -c banger-vm -f
complete -c banger-vm -s h -l help -d 'print help'
complete -c banger-vm -s V -l version -d 'print version'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a new -d 'create a VM record'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a list -d 'print every VM record'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a status -d 'print current records'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a start -d 'boot and wait until reachable'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a stop -d 'Ctrl-Alt-Del, wait, kill'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a kill -d 'kill Firecracker now'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a pause -d 'pause the vCPUs'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a resume -d 'resume a paused VM'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a wait -d 'wait until reachable'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a console -d 'print the serial console'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a ssh -d 'ssh into the guest'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a exec -d 'run one command in the guest'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a cp -d 'copy a file into or out of a guest'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a snapshot -d 'Full snapshot to DIR'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a restore -d 'restore a snapshot from DIR'
complete -c banger-vm -n "not __fish_seen_subcommand_from $cmds" -a rm -d 'remove VM records'
complete -c banger-vm -n '__fish_seen_subcommand_from new' -s i -l image -x -a '(__banger_vm_images)' -d 'image to boot'
complete -c banger-vm -n '__fish_seen_subcommand_from new' -l vcpus -x -d 'virtual CPUs'
complete -c banger-vm -n '__fish_seen_subcommand_from new' -l mem -x -d 'memory in MiB'
complete -c banger-vm -n '__fish_seen_subcommand_from new' -l disk-size -x -d 'grow the root disk'
complete -c banger-vm -n '__fish_seen_subcommand_from new' -l ssh-key -r -F -d 'public key for root'
complete -c banger-vm -n '__fish_seen_subcommand_from new' -l exists-ok -d 'print the stored record when NAME exists'
complete -c banger-vm -n '__fish_seen_subcommand_from list' -s t -l table -d 'table for people'
complete -c banger-vm -n '__fish_seen_subcommand_from rm' -s f -l force -d 'release what the helper holds, even for a damaged record'
complete -c banger-vm -n '__fish_seen_subcommand_from start wait' -l wait -x -a 'agent ssh console: none' -d 'ready when'
complete -c banger-vm -n '__fish_seen_subcommand_from start wait' -l wait-console -x -d 'ready when the console shows TEXT'
complete -c banger-vm -n '__fish_seen_subcommand_from start' -l no-wait -d 'return after InstanceStart'
complete -c banger-vm -n '__fish_seen_subcommand_from start wait stop exec' -l timeout -x -d 'seconds'
complete -c banger-vm -n '__fish_seen_subcommand_from exec' -l via -x -a 'agent ssh' -d 'through the agent or ssh'
complete -c banger-vm -n '__fish_seen_subcommand_from exec' -s t -l tty -d 'run on a terminal'
complete -c banger-vm -n '__fish_seen_subcommand_from exec' -s e -l env -x -d 'K=V for the command'
complete -c banger-vm -n '__fish_seen_subcommand_from exec' -l cwd -x -d 'working directory'
complete -c banger-vm -n '__fish_seen_subcommand_from cp' -l mode -x -d 'mode in the guest'
complete -c banger-vm -n '__fish_seen_subcommand_from cp' -l owner -x -d 'UID[:GID] in the guest'
complete -c banger-vm -n '__fish_seen_subcommand_from cp' -F -a '(__banger_vm_names | string replace -r \'$\' :)'
complete -c banger-vm -n '__fish_seen_subcommand_from console' -s f -l follow -d 'keep printing'
complete -c banger-vm -n '__fish_seen_subcommand_from console' -s n -l lines -x -d 'last N lines'
complete -c banger-vm -n '__fish_seen_subcommand_from status rm start stop kill pause resume wait console ssh exec' -a '(__banger_vm_names)'
