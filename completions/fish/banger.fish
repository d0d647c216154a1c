# fish completion for banger (the dispatcher)
function __banger_commands
    banger commands 2>/dev/null | string replace -r '\s+' \t
end
complete -c banger -f
complete -c banger -s h -l help -d 'print help'
complete -c banger -s V -l version -d 'print version'
complete -c banger -n '__fish_use_subcommand' -a '(__banger_commands)'
complete -c banger -n '__fish_use_subcommand' -a 'up down rm help commands'
