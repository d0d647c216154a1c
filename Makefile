# banger: build, test, bench. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
BATS := tests/node_modules/bats/bin/bats
BATS_JOBS ?= 1

.PHONY: all build test lint unit bats bench deps install clean

all: build

build:
	$(CARGO) build --workspace --all-targets

$(BATS): tests/package.json
	cd tests && npm ci --no-audit --no-fund
	touch $(BATS)

deps: $(BATS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	shellcheck -S warning $$(git ls-files 'tests/bats/*.bash' 'scripts/*' '.ci/*' 'bin/scripts/*' 2>/dev/null)
	for f in man/*.[178]; do [ -e "$$f" ] || continue; mandoc -T lint -W warning "$$f" || exit 1; done

unit:
	$(CARGO) test --workspace

bats: build $(BATS)
	$(BATS) --timing --print-output-on-failure tests/bats

# The whole suite: lint, unit tests, then the black-box tests (as root in CI).
test: lint unit bats

bench: $(BATS)
	$(CARGO) build --release --workspace --all-targets
	$(CARGO) bench --workspace

install: 
	$(CARGO) build --release --workspace
	install -d $(DESTDIR)/usr/local/bin
	for b in banger banger-vm banger-snap banger-net banger-jail banger-image banger-helper; do \
		install -m 0755 target/release/$$b $(DESTDIR)/usr/local/bin/; done

clean:
	$(CARGO) clean
