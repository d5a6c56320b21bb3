# `make test` and `make demo` set up everything they need on a fresh machine first.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# command:debian-package pairs that the envs and their tests need.
SYSDEPS := chromium:chromium Xvfb:xvfb xdotool:xdotool adb:adb \
           xterm:xterm xcalc:x11-apps mousepad:mousepad

.PHONY: test demo sysdeps venv clean

sysdeps:
	@missing=""; \
	for pair in $(SYSDEPS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(STAMP)

# torch is installed alone first, pinned: 2.13.0 is the CPU build that is on local disk.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Test files run in parallel, each whole in one worker process (its module's phone, browser or
# display stay its own): two workers per CPU, at most 4, since most tests wait on a browser, a
# phone or a display (on 2 CPUs, 4 workers took the suite from 816 s to 671 s; 6 took 774 s
# against 716 s for 4 on 2026-12-07, and two tests that wait on time failed under that load).
TEST_WORKERS ?= $(shell n=$$(( $$(nproc 2>/dev/null || echo 1) * 2 )); [ $$n -gt 4 ] && n=4; echo $$n)

test: sysdeps venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

demo: sysdeps venv
	$(PY) agent_cli.py demo

clean:
	rm -rf $(VENV) runs .pytest_cache
