# cellgrad: `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test regenerate bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cellgrad list
	$(VENV)/bin/cellgrad derive lstm

test: $(STAMP)
	$(PY) -m pytest -q

regenerate: $(STAMP)
	$(VENV)/bin/cellgrad regenerate

bench: $(STAMP)
	$(VENV)/bin/cellgrad bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
