PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: test demo lint clean-runs

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(VENV_STAMP)

test: $(VENV_STAMP)
	$(PY) -m pytest

demo: $(VENV_STAMP)
	$(PY) src/run.py -m depth=2,10,30
	$(PY) analysis/report.py

clean-runs:  # everything the runs wrote; runs/README.md stays
	find runs -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

lint: $(VENV_STAMP)
	$(PY) -m ruff check src analysis tests
