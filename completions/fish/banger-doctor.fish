# fish completion for banger-doctor
complete -c banger-doctor -f
complete -c banger-doctor -s t -l table -d 'table for people'
complete -c banger-doctor -l strict -d 'exit 1 on warnings too'
complete -c banger-doctor -s h -l help -d 'print help'
complete -c banger-doctor -s V -l version -d 'print version'
