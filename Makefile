# Set-up and the two everyday commands. `make study` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# CPU machines here take the torch 2.13.0 wheel on disk; elsewhere pip picks the build for the
# platform (CUDA on Linux GPUs). Override e.g. TORCH="torch==2.13.0 --index-url <your index>".
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: study test lint setup setup-test browser

# `make study` needs the package only; `make test` and `make lint` add the test extras (pytest,
# ruff, Ray, ...: 40 s more of set-up) to the same venv.
setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

# Packages are installed by uv (itself from pip), ~2.5x faster than pip here. uv reads neither
# pip.conf nor PIP_* variables: pip's find-links (where a machine keeps wheels on disk, like
# the CPU torch here) and index are passed on, so uv finds what pip would.
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
INDEX_URL ?= $(or $(PIP_INDEX_URL),$(shell $(PYTHON) -m pip config get global.index-url 2>/dev/null))
UV_INSTALL = $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
	$(foreach link,$(FIND_LINKS),--find-links $(link)) $(if $(INDEX_URL),--index-url $(INDEX_URL))

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(UV_INSTALL) $(TORCH)
	$(UV_INSTALL) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(UV_INSTALL) -e ".[test]"
	touch $@

study: setup
	$(BIN)/ecgscale study $(ARGS)

# The tests run torch on one thread each: one pytest-xdist process per CPU (at most
# TEST_PROCESSES), whole files to a process so module fixtures are built once.
# `make test ARGS="-n 0"` runs them in one process.
TEST_PROCESSES ?= 4
test: setup-test browser
	$(BIN)/python -m pytest -q -n logical --maxprocesses $(TEST_PROCESSES) --dist loadfile $(ARGS)

# Headless Chromium for tests/test_report_browser.py: the Debian packages chromium and
# chromium-driver, installed when missing if we may (root with apt-get); else that test skips.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing chromium and chromium-driver (Debian packages) for the browser test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || echo "apt-get failed: the browser test will skip"; \
	else echo "No chromium/chromedriver (and not root with apt-get): the browser test will skip"; \
	fi

lint: setup-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
