#!/usr/bin/env bats
# The flag tables, the man pages and the completions stay in step: every flag a binary's
# --help lists must appear in its man page and in its bash, zsh and fish completions.

load test_helper

setup() {
    banger_env
}

teardown() {
    banger_teardown
}

# Binaries that ship: each must have a man page and completions.
binaries() {
    local b
    for b in "$BIN"/banger "$BIN"/banger-*; do
        b=$(basename "$b")
        case "$b" in *.d | banger-standin*) continue ;; esac
        [ -x "$BIN/$b" ] && echo "$b"
    done
}

flags_of() {
    "$BIN/$1" --help | grep -oE -- '(^|[ ,])--[a-z][a-z0-9-]+' | grep -oE -- '--[a-z0-9-]+' | sort -u
}

man_of() {
    local f
    for f in "$REPO/man/$1".[178]; do [ -e "$f" ] && echo "$f" && return 0; done
    return 1
}

@test "docs: every shipped binary has --help, a man page and completions" {
    local missing=()
    for b in $(binaries); do
        "$BIN/$b" --help >/dev/null || missing+=("$b: --help fails")
        man_of "$b" >/dev/null || missing+=("$b: no man/$b.[178]")
        [ -f "$REPO/completions/bash/$b" ] || missing+=("$b: no completions/bash/$b")
        [ -f "$REPO/completions/zsh/_$b" ] || missing+=("$b: no completions/zsh/_$b")
        [ -f "$REPO/completions/fish/$b.fish" ] || missing+=("$b: no completions/fish/$b.fish")
    done
    [ ${#missing[@]} -eq 0 ] || { printf '%s\n' "${missing[@]}" >&2; false; }
}

@test "docs: every flag in --help is in the man page and the bash, zsh and fish completions" {
    local missing=() b f page text
    for b in $(binaries); do
        page=$(man_of "$b") || continue
        text=$(mandoc -T utf8 "$page" | col -b)
        for f in $(flags_of "$b"); do
            grep -qF -- "$f" <<<"$text" || missing+=("$b: $f not in $page")
            grep -qF -- "$f" "$REPO/completions/bash/$b" 2>/dev/null || missing+=("$b: $f not in bash completion")
            grep -qF -- "$f" "$REPO/completions/zsh/_$b" 2>/dev/null || missing+=("$b: $f not in zsh completion")
            grep -qE -- "-l ${f#--}( |$)" "$REPO/completions/fish/$b.fish" 2>/dev/null || missing+=("$b: $f not in fish completion")
        done
    done
    [ ${#missing[@]} -eq 0 ] || { printf '%s\n' "${missing[@]}" >&2; false; }
}

@test "docs: man pages are lint-clean and completions parse" {
    local f
    for f in "$REPO"/man/*.[178]; do
        run mandoc -T lint -W warning "$f"
        assert_success
    done
    for f in "$REPO"/completions/bash/*; do bash -n "$f"; done
    for f in "$REPO"/completions/zsh/_*; do zsh -n "$f"; done
    for f in "$REPO"/completions/fish/*.fish; do fish --no-execute "$f"; done
}

@test "docs: bash completion completes subcommands and flags" {
    source "$REPO/completions/bash/banger-vm"
    COMP_WORDS=(banger-vm ne)
    COMP_CWORD=1
    _banger_vm
    [[ " ${COMPREPLY[*]} " == *" new "* ]]
    COMP_WORDS=(banger-vm new a --im)
    COMP_CWORD=3
    _banger_vm
    [[ " ${COMPREPLY[*]} " == *" --image "* ]]
}
