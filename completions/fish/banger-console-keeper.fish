# fish completion for banger-console-keeper
complete -c banger-console-keeper -f
complete -c banger-console-keeper -l fifo -r -F -d 'the FIFO Firecracker writes to'
complete -c banger-console-keeper -l log -r -F -d 'the console log'
complete -c banger-console-keeper -l max-bytes -x -d 'rotate past N bytes'
complete -c banger-console-keeper -l pid -x -a '(__fish_complete_pids)' -d 'exit once this process is gone'
complete -c banger-console-keeper -l start-time -x -d 'the pid start time'
complete -c banger-console-keeper -l user -x -d 'become UID:GID first'
complete -c banger-console-keeper -s h -l help -d 'print help'
complete -c banger-console-keeper -s V -l version -d 'print version'
