# fish completion for banger-reconcile
complete -c banger-reconcile -f
complete -c banger-reconcile -s a -l apply -d 'act on what banger can repair'
complete -c banger-reconcile -l gc -d 'also undo what interrupted pipelines left half made'
complete -c banger-reconcile -l boot -d 'the run at boot: --apply --gc, then autostart VMs'
complete -c banger-reconcile -s w -l wait -d 'wait for a reconcile already running'
complete -c banger-reconcile -s t -l table -d 'table for people'
complete -c banger-reconcile -s h -l help -d 'print help'
complete -c banger-reconcile -s V -l version -d 'print version'
