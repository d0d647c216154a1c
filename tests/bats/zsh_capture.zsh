#!/usr/bin/env zsh
# zsh_capture.zsh FPATH_DIR LINE: prints the candidates zsh's completion offers at the end of
# LINE, one per line: an interactive `zsh -f` in a pseudo-terminal (zsh/zpty) with FPATH_DIR
# first on $fpath and compinit, whose compadd also prints what it adds (between markers
# that the echoed input never contains), then Tab and a key that ends the line.
zmodload zsh/zpty || exit 2
zpty z zsh -f -i
zpty -w z "PS1= PROMPT= RPROMPT=; fpath=($1 \$fpath); autoload -Uz compinit; compinit -u -D -d ${1:h}/.zcompdump"  # never /dev/null: compinit may remove its dump file
zpty -w z 'compadd () {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi
  typeset -a __hits; builtin compadd -A __hits "$@"; local r=$?
  local h; for h in $__hits; do print -r -- "<h""it>$h" >/dev/tty; done
  builtin compadd "$@"; return r
}'
zpty -w z 'zstyle ":completion:*" list-grouped false; zstyle ":completion:*" insert-tab false; zstyle ":completion:*" list-separator ""'
zpty -w z 'finish() { print -r -- "<e""nd>" >/dev/tty; zle send-break }; zle -N finish; bindkey "^X" finish; bindkey "^I" complete-word'
zpty -n -w z "$2"$'\t'
zpty -n -w z $'\C-x'
local line
integer n=0
while zpty -r z line; do
  [[ $line == *'<end>'* ]] && break
  if [[ $line == *'<hit>'* ]]; then print -r -- "${${line##*<hit>}%%$'\r'*}"; fi
  (( ++n > 5000 )) && break
done
zpty -d z
