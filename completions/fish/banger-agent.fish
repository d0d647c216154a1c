# fish completion for banger-agent (the guest agent)
complete -c banger-agent -f
complete -c banger-agent -l port -x -d 'listen on this vsock port'
complete -c banger-agent -l stdio -d 'serve one connection on stdin'
complete -c banger-agent -s h -l help -d 'print help'
complete -c banger-agent -s V -l version -d 'print version'
