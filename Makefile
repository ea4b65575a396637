# spyderd developer targets. PY is the interpreter with spyderd's dependencies: the venv
# packaging/install.sh creates, else python3 from PATH.
VENV_PY := /opt/spyderd/venv/bin/python
PY ?= $(if $(wildcard $(VENV_PY)),$(VENV_PY),python3)
LINT_PATHS := $(wildcard spyderd tests bench)

.PHONY: test lint install bench catalog probes

# pytest exits non-zero on failures; exit code 5 ("no tests collected") also fails here.
test: probes
	@$(PY) -m pytest -q -p no:cacheprovider tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; \
	exit $$rc

# The probes' CO-RE objects (probes/build/*.bpf.o): clang, bpftool, libbpf-dev.
probes:
	$(MAKE) -s -C probes

lint:
	@if $(PY) -m ruff --version >/dev/null 2>&1; then \
		$(PY) -m ruff check $(LINT_PATHS); \
	elif command -v ruff >/dev/null 2>&1; then \
		ruff check $(LINT_PATHS); \
	else \
		echo "make lint: ruff is not installed; skipping"; \
	fi

install:
	bash packaging/install.sh --no-start

bench:
	@set -e; found=0; \
	for f in bench/bench_*.py; do \
		[ -e "$$f" ] || continue; found=1; \
		echo "==> $$f"; \
		PYTHONPATH=. $(PY) "$$f"; \
	done; \
	if [ $$found -eq 0 ]; then echo "make bench: no bench/bench_*.py files" >&2; exit 1; fi

# Regenerate the per-rule entries of packaging/spyderd.catalog after changing rules/.
catalog:
	$(PY) packaging/gen-catalog.py
