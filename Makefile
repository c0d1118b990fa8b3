# Two commands for a fresh machine with Python, pip and make: `make demo` and `make test`.
# Each creates .venv and installs what it needs (re-installs when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The suite also runs on the lowest Airflow minor the package supports, in a venv of its own.
AIRFLOW_LOW := 3.2.2
VENV_LOW := .venv-airflow32
STAMP_LOW := $(VENV_LOW)/.installed

.PHONY: demo test test-airflow33 test-airflow32 lint bench bench-ledger clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

$(STAMP_LOW): pyproject.toml constraints/airflow-3.2.txt
	$(PYTHON) -m venv $(VENV_LOW)
	$(VENV_LOW)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_LOW)/bin/python -m pip install --quiet -e ".[test]" "apache-airflow==$(AIRFLOW_LOW)" \
		-c constraints/airflow-3.2.txt
	touch $(STAMP_LOW)

# The whole suite on the newest Airflow (.venv) and on the lowest supported one (.venv-airflow32).
test: lint pg redis test-airflow33 test-airflow32

test-airflow33: $(STAMP) pg redis
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-airflow32: $(STAMP_LOW) pg redis
	$(VENV_LOW)/bin/python -m pytest -q -p no:cacheprovider

# The ledger tests run against a real PostgreSQL server (tests/pgserver.py starts a private one):
# nothing to do when initdb is installed; as root, install it; otherwise say what to install.
.PHONY: pg
pg:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| [ -x "$$PG_BINDIR/initdb" ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing the PostgreSQL server for the ledger tests (apt-get install postgresql)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	else \
		echo "PostgreSQL server binaries (initdb) not found: the ledger tests will fail." >&2; \
		echo "Install them, e.g. 'sudo apt-get install postgresql' (Debian/Ubuntu)," >&2; \
		echo "'brew install postgresql' (macOS), or set PG_BINDIR to the directory holding initdb." >&2; \
	fi

# The Celery scenario (tests/integration/test_celery_executor.py) needs redis-server: nothing to do when
# it is on PATH or already unpacked; otherwise unpack Debian's package and the libraries it links into
# .cache/redis (apt-get download and dpkg -x: no root needed, no service started). As root, the
# package lists are refreshed first when the download fails.
REDIS_CACHE := .cache/redis
REDIS_DEBS := redis-server redis-tools libjemalloc2 liblzf1
.PHONY: redis
redis:
	@if command -v redis-server >/dev/null 2>&1 || [ -x "$$REDIS_SERVER" ] \
		|| [ -x $(REDIS_CACHE)/usr/bin/redis-server ]; then \
		:; \
	elif ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then \
		echo "redis-server not found and no apt-get/dpkg to fetch it: the Celery scenario will fail." >&2; \
		echo "Install Redis ('brew install redis', your distribution's redis package)" >&2; \
		echo "or set REDIS_SERVER to the path of redis-server." >&2; \
	else \
		echo "Unpacking Debian's redis-server into $(REDIS_CACHE) for the Celery scenario"; \
		rm -rf $(REDIS_CACHE) && mkdir -p $(REDIS_CACHE)/debs && \
		( cd $(REDIS_CACHE)/debs && { apt-get download -q $(REDIS_DEBS) >/dev/null 2>&1 \
			|| { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download -q $(REDIS_DEBS) >/dev/null; }; } \
			&& for deb in *.deb; do dpkg -x "$$deb" ..; done ) && rm -rf $(REDIS_CACHE)/debs \
		&& LD_LIBRARY_PATH="$$(echo $$PWD/$(REDIS_CACHE)/usr/lib/*-linux-gnu)" \
			$(REDIS_CACHE)/usr/bin/redis-server --version >/dev/null \
		|| { rm -rf $(REDIS_CACHE); \
			echo "Could not fetch redis-server (apt-get download $(REDIS_DEBS)): the Celery scenario" >&2; \
			echo "will fail. Install Redis or set REDIS_SERVER to the path of redis-server." >&2; }; \
	fi

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_send.py

# The ledger's cost per number, empty vs 10,000,000 rows of history (SQLite; builds the history first).
# BENCH_LEDGER_ARGS=--postgres measures PostgreSQL instead (needs `make pg`).
bench-ledger: $(STAMP)
	$(BIN)/python benchmarks/ledger_history.py $(BENCH_LEDGER_ARGS)

clean:
	rm -rf $(VENV) $(VENV_LOW) .cache .demo .test-run .mypy_cache .ruff_cache
