//! Shell completions generated from a binary's flag table ([`crate::cli::Tool`]), as ripgrep
//! does: `BANGER_GENERATE=bash|zsh|fish PROGRAM --help` prints them, and nothing is written by
//! hand, so a flag in `--help` is in every shell's completion by construction.
//!
//! What a value or a positional argument completes to comes from its placeholder: `NAME` (or
//! `VM`) a VM of the state store, `IMAGE` an image, `FILE` or `PATH` a file, `DIR` a
//! directory, `USER` a user; anything else is free text. In `A|B` the first alternative
//! counts; `[`, `]` and a trailing `...` (repeated) are read as in a synopsis, and what follows
//! `--` is another program's (nothing is completed there).
//!
//! The dispatcher's own completion (`banger`) lists the commands (`banger commands`, which
//! leaves out internal programs) and hands `banger SUB ...` to `banger-SUB`'s completion:
//! the installed one, or else the one the command generates, so it works for every
//! sub-binary, present and future.

use crate::cli::{Command, Flag, Tool, COMMON};

/// What a value completes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Free,
    Vm,
    Image,
    File,
    Dir,
    User,
}

impl Kind {
    /// From a placeholder such as `IMAGE`, `DIR|URL` or `[NAME...]`.
    pub fn of(placeholder: &str) -> Kind {
        let word: String = placeholder
            .trim_start_matches('[')
            .split('|')
            .next()
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '-')
            .collect();
        match word.as_str() {
            "NAME" | "VM" => Kind::Vm,
            "IMAGE" => Kind::Image,
            "FILE" | "PATH" => Kind::File,
            "DIR" => Kind::Dir,
            "USER" => Kind::User,
            _ => Kind::Free,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Free => "",
            Kind::Vm => "vm",
            Kind::Image => "image",
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::User => "user",
        }
    }
}

/// The positional arguments of a synopsis (`NAME DIR`, `[NAME...]`, `NAME -- CMD...`): their
/// kinds, and whether the last one repeats.
pub fn positionals(args: &str) -> (Vec<Kind>, bool) {
    let mut kinds = Vec::new();
    let mut repeats = false;
    for tok in args.split_whitespace() {
        let t = tok.trim_start_matches('[');
        if t.starts_with("--") {
            break;
        }
        if t.starts_with("OPTIONS") || t.is_empty() {
            continue;
        }
        kinds.push(Kind::of(t));
        repeats = tok.trim_end_matches(']').ends_with("...");
    }
    (kinds, repeats)
}

/// Every flag of a command, the common ones last.
fn flags_of(c: &Command) -> impl Iterator<Item = &Flag> {
    c.flags.iter().chain(COMMON.iter())
}

fn spellings(f: &Flag) -> Vec<String> {
    let mut v = vec![format!("--{}", f.long)];
    if let Some(s) = f.short {
        v.push(format!("-{s}"));
    }
    v
}

/// The commands to complete: the subcommands, or the tool itself (name "").
fn commands(tool: &Tool) -> Vec<&Command> {
    match (tool.commands.is_empty(), tool.main) {
        (true, Some(m)) => vec![m],
        (true, None) => Vec::new(),
        (false, _) => tool.commands.iter().collect(),
    }
}

fn fn_name(tool: &str) -> String {
    format!("_{}", tool.replace('-', "_"))
}

/// Single-quotes `s` for any POSIX-like shell (fish too: `\'` works inside its quotes, but
/// closing and reopening is portable).
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn fish_sq(s: &str) -> String {
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

/// The first line of every generated file: the dispatcher checks it before using the text.
pub fn marker(shell: &str, tool: &str) -> String {
    format!("{shell} completion for {tool}: generated from its flag table by")
}

/// The text for `BANGER_GENERATE=KIND`, or `None` for an unknown KIND.
pub fn generate(tool: &Tool, kind: &str) -> Option<String> {
    Some(match (kind, tool.name) {
        ("bash", "banger") => dispatcher_bash(),
        ("zsh", "banger") => dispatcher_zsh(),
        ("fish", "banger") => dispatcher_fish(),
        ("bash", _) => bash(tool),
        ("zsh", _) => zsh(tool),
        ("fish", _) => fish(tool),
        ("describe", _) => {
            let mut line = serde_json::to_string(&serde_json::json!({
                "v": 1,
                "type": "command",
                "name": tool.name,
                "about": tool.about,
                "internal": tool.internal,
                "version": crate::VERSION,
            }))
            .unwrap_or_default();
            line.push('\n');
            line
        }
        _ => return None,
    })
}

const BASH_WORDS: &str = r##"# __banger_words KIND CUR: the candidates of a kind (the same in every banger completion).
__banger_words() {
    local dir="${BANGER_STATE_DIR:-/var/lib/banger}"
    case "$1" in
        vm) compgen -W "$(command ls -1 "$dir/vms" 2>/dev/null)" -- "$2" ;;
        image) compgen -W "$(command ls -1 "$dir/images" 2>/dev/null)" -- "$2" ;;
        file) compgen -f -- "$2" ;;
        dir) compgen -d -- "$2" ;;
        user) compgen -u -- "$2" ;;
    esac
}
# __banger_reply KIND CUR: COMPREPLY from the candidates (file names shown as such).
__banger_reply() {
    case "$1" in file | dir) compopt -o filenames 2>/dev/null ;; esac
    mapfile -t COMPREPLY < <(__banger_words "$1" "$2")
}
"##;

/// `case` patterns (`"CMD FLAG"` or `"FLAG"`) of the flags that take a value, grouped by kind.
fn bash_value_cases(tool: &Tool, sub: bool) -> Vec<(Kind, Vec<String>)> {
    let mut by: Vec<(Kind, Vec<String>)> = Vec::new();
    for c in commands(tool) {
        for f in flags_of(c).filter(|f| f.value.is_some()) {
            let k = Kind::of(f.value.unwrap_or(""));
            let pats: Vec<String> = spellings(f)
                .into_iter()
                .map(|s| {
                    if sub {
                        format!("\"{} {s}\"", c.name)
                    } else {
                        format!("\"{s}\"")
                    }
                })
                .collect();
            match by.iter_mut().find(|(kk, _)| *kk == k) {
                Some((_, v)) => v.extend(pats),
                None => by.push((k, pats)),
            }
        }
    }
    by
}

fn bash(tool: &Tool) -> String {
    let name = tool.name;
    let f = fn_name(name);
    let sub = !tool.commands.is_empty();
    let mut o = format!(
        "# {}\n#   BANGER_GENERATE=bash {name} --help\n\n",
        marker("bash", name)
    );
    o.push_str(BASH_WORDS);
    o.push_str(&format!("\n{f}() {{\n"));
    o.push_str(
        "    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n",
    );
    o.push_str("    local cmd=\"\" n=0 i w skip=0\n");
    o.push_str("    for ((i = 1; i < COMP_CWORD; i++)); do\n");
    o.push_str("        w=\"${COMP_WORDS[i]}\"\n");
    o.push_str("        if [ \"$skip\" = 1 ]; then skip=0; continue; fi\n");
    o.push_str("        case \"$w\" in\n");
    o.push_str("            --) return ;;\n");
    o.push_str("            --*=*) ;;\n");
    let valued = bash_value_cases(tool, sub);
    let all: Vec<String> = valued.iter().flat_map(|(_, p)| p.clone()).collect();
    let key = if sub { "\"$cmd $w\"" } else { "\"$w\"" };
    if all.is_empty() {
        o.push_str("            -*) ;;\n");
    } else {
        o.push_str(&format!(
            "            -*) case {key} in {}) skip=1 ;; esac ;;\n",
            all.join("|")
        ));
    }
    if sub {
        o.push_str(
            "            *) if [ -z \"$cmd\" ]; then cmd=\"$w\"; else n=$((n + 1)); fi ;;\n",
        );
    } else {
        o.push_str("            *) n=$((n + 1)) ;;\n");
    }
    o.push_str("        esac\n    done\n");
    // The value of the flag just typed.
    if !all.is_empty() {
        let pkey = if sub { "\"$cmd $prev\"" } else { "\"$prev\"" };
        o.push_str(&format!("    case {pkey} in\n"));
        for (k, pats) in &valued {
            let action = match k {
                Kind::Free => "return".to_string(),
                k => format!("__banger_reply {} \"$cur\"; return", k.word()),
            };
            o.push_str(&format!("        {}) {action} ;;\n", pats.join("|")));
        }
        o.push_str("    esac\n");
    }
    let common: Vec<String> = COMMON.iter().flat_map(spellings).collect();
    if sub {
        let names: Vec<&str> = tool.commands.iter().map(|c| c.name).collect();
        o.push_str(&format!(
            "    if [ -z \"$cmd\" ]; then\n        mapfile -t COMPREPLY < <(compgen -W \"{} {}\" -- \"$cur\")\n        return\n    fi\n",
            names.join(" "),
            common.join(" ")
        ));
    }
    // Flags.
    o.push_str(&format!(
        "    if [[ \"$cur\" == -* ]]; then\n        local flags=\"{}\"\n",
        common.join(" ")
    ));
    if sub {
        o.push_str("        case \"$cmd\" in\n");
        for c in tool.commands.iter().filter(|c| !c.flags.is_empty()) {
            let fl: Vec<String> = c.flags.iter().flat_map(spellings).collect();
            o.push_str(&format!(
                "            {}) flags+=\" {}\" ;;\n",
                c.name,
                fl.join(" ")
            ));
        }
        o.push_str("        esac\n");
    } else if let Some(m) = tool.main {
        let fl: Vec<String> = m.flags.iter().flat_map(spellings).collect();
        if !fl.is_empty() {
            o.push_str(&format!("        flags+=\" {}\"\n", fl.join(" ")));
        }
    }
    o.push_str("        mapfile -t COMPREPLY < <(compgen -W \"$flags\" -- \"$cur\")\n        return\n    fi\n");
    // Positional arguments: by command, then by index (the last one may repeat).
    o.push_str("    local kind=\"\"\n");
    let mut cases = String::new();
    for c in commands(tool) {
        let (kinds, repeats) = positionals(c.args);
        if kinds.iter().all(|k| *k == Kind::Free) {
            continue;
        }
        let mut inner = String::new();
        for (i, k) in kinds.iter().enumerate() {
            let idx = if i + 1 == kinds.len() && repeats {
                "*".to_string()
            } else {
                i.to_string()
            };
            match k {
                Kind::Free => inner.push_str(&format!("{idx}) ;; ")),
                k => inner.push_str(&format!("{idx}) kind={} ;; ", k.word())),
            }
        }
        let inner = format!("case \"$n\" in {inner}esac");
        if sub {
            cases.push_str(&format!("        {}) {inner} ;;\n", c.name));
        } else {
            cases.push_str(&format!("    {inner}\n"));
        }
    }
    if sub && !cases.is_empty() {
        o.push_str(&format!("    case \"$cmd\" in\n{cases}    esac\n"));
    } else {
        o.push_str(&cases);
    }
    o.push_str("    [ -z \"$kind\" ] || __banger_reply \"$kind\" \"$cur\"\n");
    o.push_str(&format!("}}\ncomplete -F {f} {name}\n"));
    o
}

fn dispatcher_bash() -> String {
    let mut o = format!(
        "# {}\n#   BANGER_GENERATE=bash banger --help\n",
        marker("bash", "banger")
    );
    o.push_str(r##"# `banger SUB ...` is completed by banger-SUB's completion: the installed one
# (bash-completion's loader), or else the one `banger SUB` generates.

_banger() {
    local cur="${COMP_WORDS[COMP_CWORD]}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        mapfile -t COMPREPLY < <(compgen -W "$(banger commands 2>/dev/null | awk '{print $1}') help commands -h --help -V --version" -- "$cur")
        return
    fi
    local sub="${COMP_WORDS[1]}"
    case "$sub" in
        help)
            [ "$COMP_CWORD" -eq 2 ] && mapfile -t COMPREPLY < <(compgen -W "$(banger commands 2>/dev/null | awk '{print $1}')" -- "$cur")
            return ;;
        commands | -*) return ;;
    esac
    local fn="_banger_${sub//-/_}"
    if ! declare -F "$fn" >/dev/null && declare -F _completion_loader >/dev/null; then
        _completion_loader "banger-$sub" >/dev/null 2>&1
    fi
    if ! declare -F "$fn" >/dev/null; then
        local text
        text=$(BANGER_GENERATE=bash banger "$sub" --help 2>/dev/null) || return
        [[ "$text" == "# bash completion for banger-$sub: generated"* ]] || return
        eval "$text"
    fi
    declare -F "$fn" >/dev/null || return
    local -a COMP_WORDS=("banger-$sub" "${COMP_WORDS[@]:2}")
    local COMP_CWORD=$((COMP_CWORD - 1))
    "$fn"
}
complete -F _banger banger
"##);
    o
}

/// Escapes text for inside `[...]` of a zsh `_arguments` spec, in single quotes.
fn zsh_desc(s: &str) -> String {
    s.replace('\'', r"'\''")
        .replace('[', r"\[")
        .replace(']', r"\]")
}

fn zsh_action(k: Kind) -> &'static str {
    match k {
        Kind::Free => "",
        Kind::Vm => "__banger_words vm",
        Kind::Image => "__banger_words image",
        Kind::File => "_files",
        Kind::Dir => "_files -/",
        Kind::User => "_users",
    }
}

/// A placeholder as a zsh message (no colons).
fn zsh_msg(p: &str) -> String {
    p.replace(':', " ")
}

fn zsh_specs(c: &Command) -> Vec<String> {
    let mut v = vec!["$common".to_string()];
    for f in c.flags {
        let mut s = match f.short {
            Some(sh) => format!("'(-{sh} --{l})'{{-{sh},--{l}}}'", l = f.long),
            None => format!("'--{}", f.long),
        };
        s.push_str(&format!("[{}]", zsh_desc(f.help)));
        if let Some(p) = f.value {
            s.push_str(&format!(":{}:{}", zsh_msg(p), zsh_action(Kind::of(p))));
        }
        s.push('\'');
        v.push(s);
    }
    let (kinds, repeats) = positionals(c.args);
    let words: Vec<&str> = c
        .args
        .split_whitespace()
        .map(|t| t.trim_start_matches('['))
        .take_while(|t| !t.starts_with("--"))
        .filter(|t| !t.starts_with("OPTIONS") && !t.is_empty())
        .collect();
    for (i, k) in kinds.iter().enumerate() {
        let msg: String = words
            .get(i)
            .map(|w| {
                w.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect()
            })
            .unwrap_or_default();
        let pos = if i + 1 == kinds.len() && repeats {
            "*".to_string()
        } else {
            (i + 1).to_string()
        };
        v.push(format!("'{pos}:{}:{}'", zsh_msg(&msg), zsh_action(*k)));
    }
    v
}

const ZSH_WORDS: &str = r##"(( $+functions[__banger_words] )) || __banger_words() {
    local dir=${BANGER_STATE_DIR:-/var/lib/banger} what=$1
    local -a v
    v=(${(f)"$(command ls -1 $dir/${what}s 2>/dev/null)"})
    _describe -t ${what}s $what v
}
"##;

fn zsh(tool: &Tool) -> String {
    let name = tool.name;
    let mut o = format!(
        "#compdef {name}\n# {}\n#   BANGER_GENERATE=zsh {name} --help\n\n",
        marker("zsh", name)
    );
    o.push_str(ZSH_WORDS);
    o.push_str(&format!("\n_{name}() {{\n"));
    o.push_str("    local -a common\n    common=(");
    let common: Vec<String> = COMMON
        .iter()
        .map(|f| match f.short {
            Some(s) => format!("'(- *)'{{-{s},--{}}}'[{}]'", f.long, zsh_desc(f.help)),
            None => format!("'(- *)--{}[{}]'", f.long, zsh_desc(f.help)),
        })
        .collect();
    o.push_str(&common.join(" "));
    o.push_str(")\n");
    if tool.commands.is_empty() {
        if let Some(m) = tool.main {
            o.push_str(&format!(
                "    _arguments -s {}\n",
                zsh_specs(m).join(" \\\n        ")
            ));
        }
    } else {
        o.push_str("    if (( CURRENT == 2 )); then\n        local -a cmds\n        cmds=(\n");
        for c in tool.commands {
            o.push_str(&format!(
                "            {}\n",
                sq(&format!("{}:{}", c.name, c.about.replace(':', r"\:")))
            ));
        }
        o.push_str(&format!(
            "        )\n        _describe -t commands '{name} command' cmds\n        return\n    fi\n"
        ));
        o.push_str(
            "    local cmd=$words[2]\n    shift words\n    (( CURRENT-- ))\n    case $cmd in\n",
        );
        for c in tool.commands {
            o.push_str(&format!(
                "        {})\n            _arguments -s {} ;;\n",
                c.name,
                zsh_specs(c).join(" \\\n                ")
            ));
        }
        o.push_str("    esac\n");
    }
    o.push_str(&format!("}}\n\n_{name} \"$@\"\n"));
    o
}

fn dispatcher_zsh() -> String {
    let mut o = format!(
        "#compdef banger\n# {}\n#   BANGER_GENERATE=zsh banger --help\n",
        marker("zsh", "banger")
    );
    o.push_str(r##"# `banger SUB ...` is completed by _banger-SUB: the installed one (on $fpath), or else the
# one `banger SUB` generates.

_banger() {
    if (( CURRENT == 2 )) && [[ $PREFIX == -* ]]; then
        local -a opts
        opts=('--help:print this help and exit' '-h:print this help and exit'
            '--version:print the version and exit' '-V:print the version and exit')
        _describe -t options 'option' opts
        return
    fi
    if (( CURRENT == 2 )); then
        local -a subs
        subs=(${(f)"$(banger commands 2>/dev/null | sed -E 's/:/\\:/g; s/^([^ ]+) +/\1:/')"})
        subs+=('help:show the help of banger or of a command' 'commands:list the commands installed')
        _describe -t commands 'banger command' subs
        return
    fi
    local sub=$words[2]
    case $sub in
        help)
            if (( CURRENT == 3 )); then
                local -a subs
                subs=(${(f)"$(banger commands 2>/dev/null | awk '{print $1}')"})
                _describe -t commands 'banger command' subs
            fi
            return ;;
        commands|-*) return ;;
    esac
    words=("banger-$sub" "${(@)words[3,-1]}")
    (( CURRENT-- ))
    if (( $+functions[_banger-$sub] )) || autoload -Uz +X _banger-$sub 2>/dev/null; then
        _banger-$sub
        return
    fi
    local text
    text=$(BANGER_GENERATE=zsh banger $sub --help 2>/dev/null) || return
    [[ $text == "#compdef banger-$sub"* ]] || return
    eval "$text"
}

_banger "$@"
"##);
    o
}

fn fish_value(k: Kind) -> String {
    match k {
        Kind::Free => "-x".into(),
        Kind::Vm => "-x -a '(__banger_words vm)'".into(),
        Kind::Image => "-x -a '(__banger_words image)'".into(),
        Kind::File => "-r -F".into(),
        Kind::Dir => "-x -a '(__fish_complete_directories)'".into(),
        Kind::User => "-x -a '(__fish_complete_users)'".into(),
    }
}

const FISH_WORDS: &str = r##"function __banger_words
    set -l dir /var/lib/banger
    set -q BANGER_STATE_DIR; and set dir $BANGER_STATE_DIR
    command ls -1 $dir/$argv[1]s 2>/dev/null
end
"##;

fn fish(tool: &Tool) -> String {
    let name = tool.name;
    let mut o = format!(
        "# {}\n#   BANGER_GENERATE=fish {name} --help\n\n",
        marker("fish", name)
    );
    o.push_str(FISH_WORDS);
    o.push_str(&format!("complete -c {name} -f\n"));
    let flag_line = |cond: &str, f: &Flag| -> String {
        let mut l = format!("complete -c {name}{cond}");
        if let Some(s) = f.short {
            l.push_str(&format!(" -s {s}"));
        }
        l.push_str(&format!(" -l {}", f.long));
        if let Some(p) = f.value {
            l.push(' ');
            l.push_str(&fish_value(Kind::of(p)));
        }
        l.push_str(&format!(" -d {}\n", fish_sq(f.help)));
        l
    };
    for f in COMMON {
        o.push_str(&flag_line("", f));
    }
    for c in commands(tool) {
        let cond = if c.name.is_empty() {
            String::new()
        } else {
            o.push_str(&format!(
                "complete -c {name} -n __fish_use_subcommand -a {} -d {}\n",
                c.name,
                fish_sq(c.about)
            ));
            format!(
                " -n {}",
                fish_sq(&format!("__fish_seen_subcommand_from {}", c.name))
            )
        };
        for f in c.flags {
            o.push_str(&flag_line(&cond, f));
        }
        let (kinds, _) = positionals(c.args);
        let mut seen: Vec<Kind> = Vec::new();
        for k in kinds.into_iter().filter(|k| *k != Kind::Free) {
            if seen.contains(&k) {
                continue;
            }
            seen.push(k);
            let what = match k {
                Kind::File => "-F".to_string(),
                Kind::Dir => "-a '(__fish_complete_directories)'".to_string(),
                Kind::User => "-a '(__fish_complete_users)'".to_string(),
                k => format!("-a '(__banger_words {})'", k.word()),
            };
            o.push_str(&format!("complete -c {name}{cond} {what}\n"));
        }
    }
    o
}

fn dispatcher_fish() -> String {
    let mut o = format!(
        "# {}\n#   BANGER_GENERATE=fish banger --help\n",
        marker("fish", "banger")
    );
    o.push_str(r##"# `banger SUB ...` is completed by banger-SUB's completion: the installed one (autoloaded
# by `complete -C`), or else the one `banger SUB` generates.

function __banger_commands
    banger commands 2>/dev/null | string replace -r '\s+' \t
end

function __banger_handoff
    set -l tokens (commandline -opc)
    set -l sub $tokens[2]
    contains -- $sub help commands; and return
    set -l line (string join ' ' -- banger-$sub (string escape -- $tokens[3..-1]))' '(commandline -ct)
    set -l got (complete -C "$line")
    if test (count $got) -eq 0; and not complete -c banger-$sub | string length -q
        set -l text (env BANGER_GENERATE=fish banger $sub --help 2>/dev/null)
        string match -q "# fish completion for banger-$sub: generated*" -- $text[1]; or return
        string join \n -- $text | source
        set got (complete -C "$line")
    end
    printf '%s\n' $got
end

complete -c banger -f
complete -c banger -n __fish_use_subcommand -s h -l help -d 'print this help and exit'
complete -c banger -n __fish_use_subcommand -s V -l version -d 'print the version and exit'
complete -c banger -n __fish_use_subcommand -a '(__banger_commands)'
complete -c banger -n __fish_use_subcommand -a help -d 'show the help of banger or of a command'
complete -c banger -n __fish_use_subcommand -a commands -d 'list the commands installed'
complete -c banger -n '__fish_seen_subcommand_from help' -a '(__banger_commands)'
complete -c banger -n 'not __fish_use_subcommand' -a '(__banger_handoff)'
"##);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_placeholders() {
        assert_eq!(Kind::of("IMAGE"), Kind::Image);
        assert_eq!(Kind::of("DIR|URL"), Kind::Dir);
        assert_eq!(Kind::of("USER|UID"), Kind::User);
        assert_eq!(Kind::of("[NAME...]"), Kind::Vm);
        assert_eq!(Kind::of("SECS"), Kind::Free);
        assert_eq!(
            positionals("[NAME...]"),
            (vec![Kind::Vm], true),
            "a repeated, optional name"
        );
        assert_eq!(positionals("NAME DIR"), (vec![Kind::Vm, Kind::Dir], false));
        assert_eq!(positionals("NAME -- CMD..."), (vec![Kind::Vm], false));
        assert_eq!(
            positionals("NAME [-- SSH-ARGS...]"),
            (vec![Kind::Vm], false)
        );
        assert_eq!(
            positionals("NAME HOSTPORT[:GUESTPORT][/tcp|/udp]..."),
            (vec![Kind::Vm, Kind::Free], true)
        );
        assert_eq!(positionals(""), (vec![], false));
        assert_eq!(
            positionals("NAME [OPTIONS] -- CMD..."),
            (vec![Kind::Vm], false)
        );
    }

    #[test]
    fn unknown_kinds_are_refused() {
        let t = Tool {
            name: "banger-x",
            about: "x",
            commands: &[],
            main: None,
            footer: "",
            internal: true,
        };
        assert!(generate(&t, "tcsh").is_none());
        let d: serde_json::Value =
            serde_json::from_str(&generate(&t, "describe").unwrap()).unwrap();
        assert_eq!(d["internal"], true);
        assert_eq!(d["name"], "banger-x");
    }
}
