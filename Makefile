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
	@echo "== the built-in cells"
	@$(VENV)/bin/cellgrad list
	@echo; echo "== the LSTM's BPTT equations, derived by SymPy from derive/cells/lstm.toml"
	@$(VENV)/bin/cellgrad derive lstm
	@echo; echo "== the generated NumPy kernel against central finite differences"
	@$(VENV)/bin/cellgrad check lstm --backend numpy | sed -n '1,18p'
	@echo; echo "== a hand-written formula that forgets the recurrent branch of the fork sum"
	@$(VENV)/bin/cellgrad verify lstm --quantity dc --formula 'dh*o*(1 - tanh(c)**2)' || true

test: $(STAMP)
	$(PY) -m pytest -q

regenerate: $(STAMP)
	$(VENV)/bin/cellgrad regenerate

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(VENV)/bin/cellgrad bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
