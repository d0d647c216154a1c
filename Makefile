# banger: build, test, bench. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
BATS := tests/node_modules/bats/bin/bats
BATS_JOBS ?= 1

.PHONY: all build agent test check-deps lint unit bats bench deps install uninstall clean

all: build

build:
	$(CARGO) build --workspace --all-targets

# The guest agent as guests run it: static (musl), small (the agent profile).
AGENT_TARGET ?= x86_64-unknown-linux-musl
AGENT_BIN := target/$(AGENT_TARGET)/agent/banger-agent

agent:
	$(CARGO) build --profile agent --target $(AGENT_TARGET) -p banger-agent
	@ls -l $(AGENT_BIN)

$(BATS): tests/package.json
	cd tests && npm ci --no-audit --no-fund
	touch $(BATS)

# What the tests need (tests/deps): `make test` checks it first and names this command.
check-deps:
	@tests/deps check

deps:
	tests/deps install
	$(MAKE) $(BATS)

# The bats files are checked at warning level too (a bare `! cmd` there asserts nothing:
# SC2314); what bats itself sets ($stderr of `run --separate-stderr`) is said in each file.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	shellcheck -x -S warning tests/bats/*.bash benches/*.sh benches/*.bash .ci/run tests/deps
	# Each script also reads whole on its own, without following what it sources.
	shellcheck -S warning tests/bats/*.bash benches/*.sh benches/*.bash .ci/run tests/deps
	shellcheck -S warning tests/bats/*.bats
	for f in man/*.[178]; do [ -e "$$f" ] || continue; mandoc -T lint -W warning "$$f" || exit 1; done

unit:
	$(CARGO) test --workspace

# The black-box tests need root (namespaces, loop devices, mounts, other uids): as another
# user they run through sudo (SUDO= runs them as you; most then skip).
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo -E)

bats: build $(BATS)
	$(SUDO) $(BATS) --timing --print-output-on-failure tests/bats

# The whole suite: the tools it needs, lint, unit tests, then the black-box tests (as root).
# The black-box tests include tests/bats/system-nspawn.bats, which debootstraps a Debian tree
# and boots it with systemd-nspawn (a minute or two; skipped loudly without them).
test: check-deps lint unit bats

# Every benchmark; each prints numbers and asserts nothing. The shell ones need root.
bench:
	$(CARGO) build --release --workspace
	$(CARGO) bench -p banger-lib --bench passthrough
	$(CARGO) bench -p banger-helper --bench helper_ping
	$(CARGO) bench -p banger-helper --bench ledger
	for b in benches/*.sh; do echo "== $$b"; BANGER_BIN=$(CURDIR)/target/release $$b || exit 1; done

PREFIX ?= /usr/local

# Copies the release build into $(DESTDIR)$(PREFIX) (for packagers and release archives), with
# the shell completions each binary generates from its flag table, and a list of what it
# wrote for `make uninstall`. On a host, prefer: sudo target/release/banger-system install
# (units, config, owner; see README). banger-agent is a guest program: it goes to
# lib/banger/, where banger takes it from for guests.
MANIFEST = $(DESTDIR)$(PREFIX)/share/banger/installed-files
BASHDIR = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d

RELEASE ?= target/release

install: agent
	$(CARGO) build --release -p banger -p banger-helper
	install -d $(DESTDIR)$(PREFIX)/lib/banger $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man7 \
		$(DESTDIR)$(PREFIX)/share/man/man8 $(BASHDIR) $(ZSHDIR) $(FISHDIR) $(DESTDIR)$(PREFIX)/share/banger
	set -e; : >$(MANIFEST).new; \
	install -m 0755 $(AGENT_BIN) $(DESTDIR)$(PREFIX)/lib/banger/banger-agent; \
	echo "$(PREFIX)/lib/banger/banger-agent" >>$(MANIFEST).new; \
	for b in $(RELEASE)/banger $(RELEASE)/banger-*; do \
		case "$$b" in *.d | */banger-agent) continue ;; esac; [ -x "$$b" ] || continue; n=$${b##*/}; \
		install -m 0755 "$$b" $(DESTDIR)$(PREFIX)/bin/; echo "$(PREFIX)/bin/$$n" >>$(MANIFEST).new; \
		BANGER_GENERATE=describe "$$b" --help 2>/dev/null | grep -q '"type":"command"' || continue; \
		BANGER_GENERATE=bash "$$b" --help >$(BASHDIR)/$$n; \
		BANGER_GENERATE=zsh "$$b" --help >$(ZSHDIR)/_$$n; \
		BANGER_GENERATE=fish "$$b" --help >$(FISHDIR)/$$n.fish; \
		printf '%s\n' "$(PREFIX)/share/bash-completion/completions/$$n" "$(PREFIX)/share/zsh/site-functions/_$$n" \
			"$(PREFIX)/share/fish/vendor_completions.d/$$n.fish" >>$(MANIFEST).new; \
	done; \
	for f in man/*.[178]; do s=$${f##*.}; install -m 0644 "$$f" $(DESTDIR)$(PREFIX)/share/man/man$$s/; \
		echo "$(PREFIX)/share/man/man$$s/$${f##*/}" >>$(MANIFEST).new; done; \
	echo "$(PREFIX)/share/banger/installed-files" >>$(MANIFEST).new; \
	mv $(MANIFEST).new $(MANIFEST)

# Removes what `make install` wrote (its list). An install by banger-system is removed with
# sudo banger system uninstall.
uninstall:
	@[ -f $(MANIFEST) ] || { echo "make uninstall: no $(MANIFEST): nothing installed by make install under $(DESTDIR)$(PREFIX)" >&2; exit 1; }
	while read -r f; do rm -f "$(DESTDIR)$$f"; done <$(MANIFEST)
	-rmdir $(DESTDIR)$(PREFIX)/share/banger $(DESTDIR)$(PREFIX)/lib/banger 2>/dev/null

clean:
	$(CARGO) clean
