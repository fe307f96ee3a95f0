# The two commands a newcomer needs: `make repro` and `make test`. Both set up .venv first.
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install repro test test-fast

# Re-install only when the dependency pins change; a no-op otherwise.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

repro: install
	dvc repro

# Two workers on two cores (pytest-xdist): the suite's stage processes, dvc and servers leave a
# single pytest process half idle. worksteal: a worker that runs dry takes the other's queue.
test: install
	python -m pytest -n auto --dist worksteal

# For iteration: every test not marked slow (the slow ones run pipelines, S3, torchrun).
test-fast: install
	python -m pytest -m "not slow" -q -n auto --dist worksteal

.PHONY: push pull
push: install  ## share data, models and the run-cache through the team's S3 remote
	dvc push --run-cache
	python -m coverpop.remote push-run-cache

pull: install  ## the team's data and run-cache; checks bucket and credentials first
	python -m coverpop.remote check
	dvc pull --run-cache

.PHONY: browser plots-screenshot
browser: install  ## Chromium (apt) and vega from npm (.browser/): the browser tests run, plots draw offline
	python tests/browser/plots_page.py install
	python tests/browser/plots_page.py template

plots-screenshot: browser  ## docs/plots.png: this repo's `dvc plots show` page (after make repro)
	python tests/browser/plots_page.py screenshot docs/plots.png
