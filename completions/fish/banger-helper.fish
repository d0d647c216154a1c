# fish completion for banger-helper
complete -c banger-helper -f
complete -c banger-helper -s s -l socket -r -F -d 'socket path'
complete -c banger-helper -l owner -x -a '(__fish_complete_users)' -d 'the owner user or uid'
complete -c banger-helper -l max-clients -x -d 'connections at once'
complete -c banger-helper -l read-timeout -x -d 'seconds to send a request'
complete -c banger-helper -s h -l help -d 'print help'
complete -c banger-helper -s V -l version -d 'print version'
