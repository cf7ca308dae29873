PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install dev clean bench bench-soak bench-profile bench-replay bench-demo bench-latency bench-ha mutants

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

# The demo's local AWS (moto, with Flask and Werkzeug) is the `demo` extra: the daemon's own install leaves it out.
$(VENV)/.demo-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

demo: $(VENV)/.demo-installed
	$(BIN)/rollback-watchdog demo

# The import contracts and the type check (pyproject.toml) first: a broken architecture fails in seconds.
# One worker per core, each test handed to whichever worker is free (pytest-xdist); PYTEST_ARGS= runs it in one.
PYTEST_ARGS ?= -n auto --dist worksteal

test: $(VENV)/.dev-installed
	$(BIN)/lint-imports --no-logo
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The measured daemon runs from an install of the package alone, as an operator installs it (bench/procs.py
# daemon_python): the test tools' libraries in .venv change what it loads (structlog loads rich, about 3.4 MB).
DAEMON_VENV ?= .venv-daemon
$(DAEMON_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DAEMON_VENV)
	$(DAEMON_VENV)/bin/pip install --quiet --upgrade pip
	$(DAEMON_VENV)/bin/pip install --quiet -e .
	touch $@

# Benchmark (bench/README.md): the same .venv as `make test` for the harness, then the run; writes
# bench/results.json and the table.
bench: $(VENV)/.dev-installed $(DAEMON_VENV)/.installed
	BENCH_DAEMON_PYTHON=$(CURDIR)/$(DAEMON_VENV)/bin/python $(BIN)/python -m bench.run $(BENCH_ARGS)

# The full soak alone: 10 000 polls with 1 000 rules (long: about an hour on 2 cores).
# replay over a week of 1-minute data for 100 rules on moto (bench/README.md, "Replay").
bench-replay: $(VENV)/.dev-installed $(DAEMON_VENV)/.installed
	BENCH_DAEMON_PYTHON=$(CURDIR)/$(DAEMON_VENV)/bin/python $(BIN)/python -m bench.replay_bench --moto $(BENCH_ARGS)

bench-soak: $(VENV)/.dev-installed $(DAEMON_VENV)/.installed
	BENCH_DAEMON_PYTHON=$(CURDIR)/$(DAEMON_VENV)/bin/python $(BIN)/python -m bench.run --soak-only --soak-polls 10000 $(BENCH_ARGS)

# Detection latency end to end (bench/README.md, "Detection latency"): the real daemon on moto, a breach at a known
# time, level 1's request timed; about 12 minutes of mostly waiting. The fixed-interval scenario runs the commit
# before issue 22 from a clone with its own .venv (BENCH_ARGS="--old PATH", default /tmp/bench-old).
bench-latency: $(VENV)/.dev-installed
	$(BIN)/python -m bench.latency $(BENCH_ARGS)

# Two watchdogs on one shared DynamoDB table for 30 minutes, each killed and restarted in turn (bench/ha.py).
bench-ha: $(VENV)/.dev-installed
	$(BIN)/python -m bench.ha $(BENCH_ARGS)

# Where the time and memory go (py-spy is installed into .venv for it); writes bench/profile.md.
bench-profile: $(VENV)/.dev-installed
	$(BIN)/pip install --quiet py-spy
	$(BIN)/python -m bench.profile

# How long `rollback-watchdog demo` takes (bench/README.md, "The demo"): a measure, not a test.
bench-demo: $(VENV)/.demo-installed
	$(BIN)/python -m bench.demo_time $(BENCH_ARGS)

# Mutation testing of the pure decision core (rules, escalation, signals) with its fast tests: mutmut is
# installed into .venv here, and this is not part of `make test`. The whole run takes about 10 minutes on 2
# cores; MUTANTS='watchdog.core.signals*' runs a subset. Score and the surviving mutants: bench/mutants.md.
MUTANTS ?=
MUTANT_JOBS ?= 2
mutants: $(VENV)/.dev-installed
	$(BIN)/pip install --quiet 'mutmut>=3.8,<4'
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(MUTANT_JOBS) $(MUTANTS)
	@echo "mutants by outcome:"; $(BIN)/mutmut results --all true | awk '{print $$NF}' | sort | uniq -c
	$(BIN)/mutmut results

# The pictures in docs/img/ (the status page normal, at level 2, paused, blind; the replay report), taken from
# the real daemon on moto in Debian's chromium (tools/screenshots.py; about a minute).
.PHONY: screenshots
screenshots: $(VENV)/.dev-installed
	$(BIN)/python -m tools.screenshots

clean:
	rm -rf $(VENV) build *.egg-info
