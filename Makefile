# banger: build, test, bench. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
BATS := tests/node_modules/bats/bin/bats
BATS_JOBS ?= 1

.PHONY: all build agent test lint unit bats bench deps install clean

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

deps: $(BATS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	shellcheck -x -S warning tests/bats/*.bash benches/*.sh benches/*.bash .ci/run bin/scripts/*
	for f in man/*.[178]; do [ -e "$$f" ] || continue; mandoc -T lint -W warning "$$f" || exit 1; done

unit:
	$(CARGO) test --workspace

bats: build $(BATS)
	$(BATS) --timing --print-output-on-failure tests/bats

# The whole suite: lint, unit tests, then the black-box tests (as root in CI). The black-box
# tests include tests/bats/system-nspawn.bats, which debootstraps a Debian tree and boots it
# with systemd-nspawn (a minute or two; skipped loudly without systemd-nspawn/debootstrap).
test: lint unit bats

# Every benchmark; each prints numbers and asserts nothing. The shell ones need root.
bench:
	$(CARGO) build --release --workspace
	$(CARGO) bench -p banger-lib --bench passthrough
	$(CARGO) bench -p banger-helper --bench helper_ping 2>/dev/null
	for b in benches/*.sh; do echo "== $$b"; BANGER_BIN=$(CURDIR)/target/release $$b || exit 1; done

PREFIX ?= /usr/local

# Copies the release build into $(DESTDIR)$(PREFIX) (for packagers and release archives). On
# a host, prefer: sudo target/release/banger-system install (units, config, owner; see README).
# banger-agent is a guest program: it goes to lib/banger/, where banger takes it from for guests.
install: agent
	$(CARGO) build --release -p banger -p banger-helper
	install -d $(DESTDIR)$(PREFIX)/lib/banger
	install -m 0755 $(AGENT_BIN) $(DESTDIR)$(PREFIX)/lib/banger/banger-agent
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man7 \
		$(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	for b in target/release/banger target/release/banger-*; do \
		case "$$b" in *.d | */banger-agent) continue ;; esac; if [ -x "$$b" ]; then install -m 0755 "$$b" $(DESTDIR)$(PREFIX)/bin/; fi; done
	install -m 0755 bin/scripts/banger-up bin/scripts/banger-down bin/scripts/banger-rm $(DESTDIR)$(PREFIX)/bin/
	for f in man/*.1; do install -m 0644 $$f $(DESTDIR)$(PREFIX)/share/man/man1/; done
	install -m 0644 man/banger.7 $(DESTDIR)$(PREFIX)/share/man/man7/
	install -m 0644 man/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 0644 completions/bash/* $(DESTDIR)$(PREFIX)/share/bash-completion/completions/
	install -m 0644 completions/zsh/_* $(DESTDIR)$(PREFIX)/share/zsh/site-functions/
	install -m 0644 completions/fish/*.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/

clean:
	$(CARGO) clean
