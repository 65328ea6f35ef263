# The two commands of the README: `make demo` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cvplug-installed

.PHONY: install demo test test-fast bench docs

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cvplug demo --out demo-output

test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/bias_overhead.py

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict -f docs/mkdocs.yml   # into build/site/ (git ignores build/)
