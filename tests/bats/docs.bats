#!/usr/bin/env bats
# --help, the man pages and the shell completions. The completions are generated from each
# binary's flag table (BANGER_GENERATE=bash|zsh|fish PROGRAM --help), so a flag in --help is
# in them by construction; the man pages are written by hand and checked against --help.
# Also: the dispatcher's completion hands `banger SUB` to banger-SUB's in bash, zsh and fish,
# and never offers the internal programs.

load test_helper

setup() {
    banger_env
    COMP="$BATS_TEST_TMPDIR/completions"
    mkdir -p "$COMP"
}

teardown() {
    banger_teardown
}

# Every program in the build that describes itself as a banger command (what installs and
# `banger commands` go by).
binaries() {
    local b name
    for b in "$BIN"/banger "$BIN"/banger-*; do
        name=$(basename "$b")
        case "$name" in *.d) continue ;; esac
        [ -x "$b" ] || continue
        BANGER_GENERATE=describe "$b" --help 2>/dev/null | jq -e '.type == "command"' >/dev/null 2>&1 && echo "$name"
    done
}

# The flags of a binary: the option lines of its --help (not flags named in the footer's text).
flags_of() {
    "$BIN/$1" --help | grep -E -- '^ +(-[a-zA-Z], )?--[a-z]' | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u
}

man_of() {
    local f
    for f in "$REPO/man/$1".[178]; do [ -e "$f" ] && echo "$f" && return 0; done
    return 1
}

# generate SHELL BIN: the generated completion, into $COMP (named as installs name it).
generate() {
    local out
    case "$1" in
        bash) out="$COMP/bash/$2" ;;
        zsh) out="$COMP/zsh/_$2" ;;
        fish) out="$COMP/fish/$2.fish" ;;
    esac
    mkdir -p "$(dirname "$out")"
    BANGER_GENERATE=$1 "$BIN/$2" --help >"$out"
    echo "$out"
}

@test "docs: every shipped binary has --help, a man page, and generates its bash, zsh and fish completions" {
    local missing=() b sh n=0
    for b in $(binaries); do
        n=$((n + 1))
        "$BIN/$b" --help >/dev/null || missing+=("$b: --help fails")
        man_of "$b" >/dev/null || missing+=("$b: no man/$b.[178]")
        for sh in bash zsh fish; do
            [ -s "$(generate "$sh" "$b")" ] || missing+=("$b: no $sh completion")
        done
    done
    [ "$n" -ge 13 ] || missing+=("only $n binaries describe themselves")
    [ ${#missing[@]} -eq 0 ] || { printf '%s\n' "${missing[@]}" >&2; false; }
    # The up/down/rm porcelain is among them (issue 13, item 7).
    binaries | grep -qx banger-up
    binaries | grep -qx banger-down
    binaries | grep -qx banger-rm
}

@test "docs: every flag in --help is in the man page and in the generated bash, zsh and fish completions" {
    local missing=() b f page text bash zsh fish
    for b in $(binaries); do
        page=$(man_of "$b") || continue
        text=$(mandoc -T utf8 "$page" | col -b)
        bash=$(generate bash "$b")
        zsh=$(generate zsh "$b")
        fish=$(generate fish "$b")
        for f in $(flags_of "$b"); do
            grep -qF -- "$f" <<<"$text" || missing+=("$b: $f not in $page")
            grep -qF -- "$f" "$bash" || missing+=("$b: $f not in bash completion")
            grep -qF -- "$f" "$zsh" || missing+=("$b: $f not in zsh completion")
            grep -qE -- "-l ${f#--}( |$)" "$fish" || missing+=("$b: $f not in fish completion")
        done
    done
    [ ${#missing[@]} -eq 0 ] || { printf '%s\n' "${missing[@]}" >&2; false; }
}

@test "docs: man pages are lint-clean and the generated completions parse" {
    local f b
    for f in "$REPO"/man/*.[178]; do
        run mandoc -T lint -W warning "$f"
        assert_success
    done
    for b in $(binaries); do
        bash -n "$(generate bash "$b")"
        zsh -n "$(generate zsh "$b")"
        fish --no-execute "$(generate fish "$b")"
    done
    # An unknown kind is a usage error.
    run env BANGER_GENERATE=tcsh banger-vm --help
    assert_failure 2
    # No hand-written completions to drift: they are generated, at install too.
    [ ! -d "$REPO/completions" ]
}

# bash_complete LINE...: the words bash completes for the command line (the last word is
# the one being completed), after sourcing the generated completions of banger and banger-vm.
bash_complete() {
    local b
    # shellcheck source=/dev/null # generated at test time
    for b in banger banger-vm; do source "$(generate bash "$b")"; done
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    local fn="_${1//-/_}"
    "$fn"
    printf '%s\n' "${COMPREPLY[@]}"
}

@test "docs: bash completes subcommands, flags, images and VM names, and hands banger SUB to banger-SUB (issue 13, item 7)" {
    stub_image default other
    banger-vm new dev1 --image default >/dev/null
    run bash_complete banger-vm ne
    assert_output "new"
    run bash_complete banger-vm new a --im
    assert_output -- "--image"
    run bash_complete banger-vm new a --image ""
    assert_output $'default\nother'
    run bash_complete banger-vm status ""
    assert_output "dev1"
    run bash_complete banger-vm exec dev1 -- un
    assert_output ""
    # Through the dispatcher: banger-vm's completion (loaded here), and banger-up's, which
    # is not loaded: generated on the fly from `banger up`.
    run bash_complete banger vm ne
    assert_output "new"
    run bash_complete banger up --wait-c
    assert_output -- "--wait-console"
    run bash_complete banger up ""
    assert_output "dev1"
    # banger <Tab>: the commands for people, not the internal programs (issue 13, item 8).
    run bash_complete banger ""
    assert_line vm
    assert_line up
    refute_line helper
    refute_line console-keeper
}

@test "docs: zsh completes through the dispatcher and offers no internal program (issue 13, items 7 and 8)" {
    command -v zsh >/dev/null || skip "zsh is not installed"
    zsh -fc 'zmodload zsh/zpty' 2>/dev/null || skip "zsh has no zsh/zpty"
    stub_image default
    generate zsh banger >/dev/null
    generate zsh banger-vm >/dev/null
    run timeout 30 zsh -f "$REPO/tests/bats/zsh_capture.zsh" "$COMP/zsh" 'banger-vm ne'
    assert_output "new"
    run timeout 30 zsh -f "$REPO/tests/bats/zsh_capture.zsh" "$COMP/zsh" 'banger vm new a --im'
    assert_output -- "--image"
    # banger-up's completion is not on $fpath: the dispatcher gets it from `banger up`.
    run timeout 30 zsh -f "$REPO/tests/bats/zsh_capture.zsh" "$COMP/zsh" 'banger up --wait-c'
    assert_output -- "--wait-console"
    run timeout 30 zsh -f "$REPO/tests/bats/zsh_capture.zsh" "$COMP/zsh" 'banger '
    assert_line vm
    assert_line down
    refute_line helper
    refute_line console-keeper
}

@test "docs: fish completes through the dispatcher and offers no internal program (issue 13, items 7 and 8)" {
    command -v fish >/dev/null || skip "fish is not installed"
    stub_image default
    generate fish banger >/dev/null
    generate fish banger-vm >/dev/null
    fishc() { fish -c "set -p fish_complete_path $COMP/fish; complete -C '$1'" | cut -f1; }
    run fishc 'banger vm ne'
    assert_output "new"
    run fishc 'banger vm new a --image '
    assert_output "default"
    run fishc 'banger up --wait-c'
    assert_output -- "--wait-console"
    run fishc 'banger '
    assert_line vm
    assert_line rm
    refute_line helper
    refute_line console-keeper
}

@test "docs: every test that runs the Firecracker stand-ins by name says so in its own name, as the README promises (issue 13)" {
    # A test body that names the stand-ins (launch_standin, $STANDIN_FIRECRACKER, ...) must say
    # "stand-in" in its name.
    run awk '
        /^@test/ { name = $0; flagged = 0 }
        /^@test/, /^\}/ {
            if ($0 ~ /launch_standin|\$STANDIN_(FIRECRACKER|JAILER)|\$STANDIN_DIR/ && !flagged && tolower(name) !~ /stand-in/) {
                print FILENAME ": " name; flagged = 1
            }
        }' "$REPO"/tests/bats/*.bats
    assert_output ""
}

# readme_commands: the banger commands of the README's code blocks, one per line: continued
# lines joined, comments dropped, pipelines and && chains split, sudo and a build path taken off.
readme_commands() {
    awk '
        /^    [^ ]/ || /^      / {
            line = substr($0, 5)
            if (cont != "") { line = cont " " line; cont = "" }
            if (line ~ /\\$/) { cont = substr(line, 1, length(line) - 1); next }
            sub(/ +# .*$/, "", line)
            n = split(line, parts, /\|\|?|&&/)
            for (i = 1; i <= n; i++) {
                c = parts[i]
                gsub(/^ +| +$/, "", c)
                sub(/^sudo +/, "", c)
                sub(/^target\/release\//, "", c)
                if (c ~ /^banger(-[a-z]+)?( |$)/ && c !~ /^banger(-[a-z]+)?:/) print c
            }
            next
        }
        { cont = "" }' "$REPO/README.md"
}

@test "docs: every banger command the README shows exists, with every flag it uses (issue 13)" {
    local cmd prog sub rest help f n=0 bad=()
    while IFS= read -r cmd; do
        n=$((n + 1))
        read -r prog sub rest <<<"$cmd"
        if [ "$prog" = banger ] && [ -n "$sub" ] && [ "$sub" != help ] && [ "$sub" != commands ] && [[ "$sub" != -* ]]; then
            prog="banger-$sub"
            read -r sub rest <<<"$rest"
        fi
        [ -x "$BIN/$prog" ] || { bad+=("$cmd: no program $prog"); continue; }
        help=$("$BIN/$prog" --help 2>&1) || { bad+=("$cmd: $prog --help failed"); continue; }
        # A command of the program: its own options too.
        if [ "$prog" != banger ] && [ -n "$sub" ] && [[ "$sub" != -* ]] && grep -qE "^  $prog $sub( |\$)" <<<"$help"; then
            help+=$'\n'$("$BIN/$prog" "$sub" --help 2>&1) || { bad+=("$cmd: $prog $sub --help failed"); continue; }
        fi
        # The flags up to a lone --, after which the words are the guest's command.
        for f in $(sed 's/ -- .*//' <<<" $sub $rest " | grep -oE -- '(^| )--?[a-z][a-z0-9-]*' | tr -d ' '); do
            [ "$f" = "--" ] && continue
            grep -qE -- "(^|[ ,])$f([ ,=]|\$)" <<<"$help" || bad+=("$cmd: $prog has no $f")
        done
    done < <(readme_commands)
    [ "$n" -ge 15 ] || { echo "only $n commands found in the README: the parser is broken" >&2; false; }
    [ "${#bad[@]}" -eq 0 ] || { printf '%s\n' "${bad[@]}" >&2; false; }
}
