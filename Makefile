# The two commands of the README: `make demo` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cvplug-installed

.PHONY: install demo test test-fast bench docs

# uv (https://docs.astral.sh/uv) installs the same packages as pip from PyPI, downloading in parallel: 69 s
# instead of 128 s for the 7 GB of torch, OpenMM and the rest on the 2-core development machine. It compiles the
# bytecode at install, as pip does: without it, where PYTHONDONTWRITEBYTECODE is set (this machine, CI), every
# Python process compiled torch again (import 4.8 s instead of 2.4 s) and make test took minutes longer.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q uv
	$(PY) -m uv pip install -q --compile-bytecode --python $(PY) -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cvplug demo --out demo-output

# test: the reverse-KL file (one test, ≈ 10 minutes beside the rest) starts first on one core and the rest
# shares the other. test-fast: many short tests, which worksteal balances (124-127 s against 135 s with loadfile).
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto --dist worksteal -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/bias_overhead.py

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict -f docs/mkdocs.yml   # into build/site/ (git ignores build/)
