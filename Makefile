# ecr-oci — `make run` sets everything up and runs the demo; `make test` runs the tests.
# Both work on a brand-new Debian machine: as root, `install` apt-get installs what is missing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ECR := $(BIN)/ecr-oci
STATE_DIR := .run
TOOLS_BIN := $(CURDIR)/.tools/bin

# The demo: a registry on 127.0.0.1:$(PORT) (examples/hello-sensor's base image points at 5000).
PORT ?= 5000
REGISTRY := 127.0.0.1:$(PORT)
# The ECR service (index + search API); the registry's notifications go to it.
SERVICE_PORT ?= 8000
SERVICE_URL := http://127.0.0.1:$(SERVICE_PORT)
DEMO_DIR := examples/hello-sensor
DEMO_IMAGE ?= $(REGISTRY)/waggle/hello-sensor:0.1.0
# Docker credentials of the demo CI robot (written by `ecr-oci dev access`, mode 0600).
DEMO_AUTH := $(STATE_DIR)/demo-auth.json
# The profiled demos (docs/profiles.md): hello-sensor under podman as a node runs it, and a plugin
# that burns CPU and reports inference_ms, as a local process (no container runtime needed).
PROFILE_DIR := examples/cpu-burner
PROFILE_IMAGE ?= $(REGISTRY)/waggle/cpu-burner:0.1.0
# podman as `ecr-oci dev podman` runs it (its own storage and config under $(STATE_DIR)/podman)
NODE_PODMAN_ENV := CONTAINERS_CONF=$(CURDIR)/$(STATE_DIR)/podman/containers.conf \
	CONTAINERS_REGISTRIES_CONF=$(CURDIR)/$(STATE_DIR)/podman/registries.conf \
	CONTAINERS_STORAGE_CONF=$(CURDIR)/$(STATE_DIR)/podman/storage.conf

# Debian packages the dev environment and the integration tests run (podman's recommends bring
# conmon, netavark, slirp4netns …; runc because crun fails without CAP_SYS_RESOURCE; python3-venv
# because Debian's python3 has no ensurepip without it).
APT_PACKAGES := python3-venv docker-registry skopeo podman runc umoci busybox-static containerd zstd postgresql
POLICY_RC ?= /usr/sbin/policy-rc.d

# Go tools the integration tests use as independent clients (built only where Go exists).
ORAS_VERSION := v1.3.0
CRANE_VERSION := v0.21.0
COSIGN_VERSION := v2.6.1
# hey: the HTTP load generator of the token benchmark (compiled, so the client is not the bottleneck).
HEY_VERSION := v0.1.4
GO := $(shell command -v go 2>/dev/null)
GO_STAMPS := $(TOOLS_BIN)/.oras-$(ORAS_VERSION) $(TOOLS_BIN)/.crane-$(CRANE_VERSION) \
	$(TOOLS_BIN)/.cosign-$(COSIGN_VERSION) $(TOOLS_BIN)/.hey-$(HEY_VERSION)

PYTEST_ARGS ?=

.PHONY: help install system-packages venv go-tools run stop test lint bench lock clean

help: ## Show this help
	@echo "ecr-oci — the Edge Code Repository on a standard OCI registry"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

install: system-packages venv go-tools ## Install system packages (apt-get, as root), the venv, oras, crane, cosign

# A policy-rc.d that says "no" (kept if the machine has one) stops apt from starting the packaged
# services: Debian's docker-registry would listen on :5000 on every interface, in make run's way.
system-packages: ## apt-get install the programs the dev environment runs, if any is missing
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
		status=$$(dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null || true); \
		[ "$$status" = "install ok installed" ] || missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "error: missing system packages:$$missing" >&2; \
		echo "       install them as root: apt-get install$$missing" >&2; \
		exit 1; \
	fi; \
	echo "installing system packages:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -q; \
	policy=$(POLICY_RC); own_policy=""; \
	if [ ! -e $$policy ]; then \
		printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 755 $$policy; own_policy=1; \
	fi; \
	rc=0; apt-get install -y -q $$missing </dev/null || rc=$$?; \
	if [ -n "$$own_policy" ]; then rm -f $$policy; fi; \
	exit $$rc

venv: $(VENV)/.stamp ## Create .venv from requirements.lock (rebuilt when the lock changes)

$(VENV)/.stamp: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

go-tools: ## Build oras, crane, cosign and hey into .tools/bin (needs Go; cosign takes minutes)
ifeq ($(GO),)
	@echo "warning: go not found: oras, crane, cosign and hey are not built; the tests and benchmarks that use them fail" >&2
else
go-tools: $(GO_STAMPS)
endif

$(TOOLS_BIN)/.oras-$(ORAS_VERSION):
	GOBIN=$(TOOLS_BIN) $(GO) install oras.land/oras/cmd/oras@$(ORAS_VERSION)
	touch $@

$(TOOLS_BIN)/.crane-$(CRANE_VERSION):
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)
	touch $@

$(TOOLS_BIN)/.hey-$(HEY_VERSION):
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/rakyll/hey@$(HEY_VERSION)
	touch $@

$(TOOLS_BIN)/.cosign-$(COSIGN_VERSION):
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_VERSION)
	touch $@

run: install ## Start a registry with token auth + the ECR service, push examples/hello-sensor as a CI robot, run and profile it with podman, profile examples/cpu-burner
	$(ECR) dev service start --port $(SERVICE_PORT) --registry $(REGISTRY) --state-dir $(STATE_DIR)
	$(ECR) dev registry start --port $(PORT) --notify-service --token-auth --state-dir $(STATE_DIR)
	$(ECR) dev access --registry $(REGISTRY) --state-dir $(STATE_DIR)
	REGISTRY_AUTH_FILE=$(DEMO_AUTH) $(ECR) dev base-image --registry $(REGISTRY) --state-dir $(STATE_DIR)
	@# --force: a $(STATE_DIR)/ kept from an older ecr-oci may hold the demo version built otherwise
	@# (other manifest digests); the demo tags follow what this ecr-oci builds
	$(ECR) push $(DEMO_DIR) --registry $(REGISTRY) --insecure --authfile $(DEMO_AUTH) --force
	@echo
	@echo "--- podman pull + run $(DEMO_IMAGE) (no credentials: waggle is public) ---"
	$(ECR) dev podman --state-dir $(STATE_DIR) -- pull --quiet $(DEMO_IMAGE)
	$(ECR) dev podman --state-dir $(STATE_DIR) -- run --rm $(DEMO_IMAGE)
	@echo
	@echo "--- profile the demos (once each) and attach the profiles as referrers ---"
	$(ECR) push $(PROFILE_DIR) --registry $(REGISTRY) --insecure --authfile $(DEMO_AUTH) --force
	@if $(ECR) profile list $(DEMO_IMAGE) --insecure --json | grep -q '"digest"'; then \
		echo "$(DEMO_IMAGE): already profiled"; \
	else \
		$(NODE_PODMAN_ENV) $(ECR) profile run $(DEMO_IMAGE) --runtime podman --duration 30s \
			--device-name demo-host --insecure --authfile $(DEMO_AUTH) --attach; \
	fi
	@if $(ECR) profile list $(PROFILE_IMAGE) --insecure --json | grep -q '"digest"'; then \
		echo "$(PROFILE_IMAGE): already profiled"; \
	else \
		$(ECR) profile run $(PROFILE_IMAGE) --runtime process --input burn_seconds=3 \
			--device-name demo-host --insecure --authfile $(DEMO_AUTH) --attach; \
	fi
	$(ECR) profile list $(DEMO_IMAGE) --insecure
	$(ECR) profile list $(PROFILE_IMAGE) --insecure
	@echo
	@echo "The registry keeps running on $(REGISTRY) (state and log in $(STATE_DIR)/); its token server"
	@echo "is the ECR service on $(SERVICE_URL) (API docs: $(SERVICE_URL)/docs; it indexed the push)."
	@echo "First admin: admin; its password is in $(STATE_DIR)/admin.password (mode 0600)."
	@echo "The demo CI robot's token (push to base, waggle) is in $(DEMO_AUTH)."
	@echo "Try:  $(ECR) login $(REGISTRY) -u admin --password-stdin --insecure < $(STATE_DIR)/admin.password"
	@echo "      $(ECR) inspect $(DEMO_IMAGE) --insecure"
	@echo "      $(ECR) search --device demo-host --max-metric 'inference_ms:p95<500' --sort metric:inference_ms:p95"
	@echo "Stop everything with: make stop"

stop: ## Stop what `make run` started (registry and service, by their recorded PIDs; podman containers)
	@if [ ! -x $(ECR) ]; then echo "nothing to stop (no $(VENV))"; exit 0; fi; \
	if [ -d $(STATE_DIR)/podman ]; then \
		$(ECR) dev podman --state-dir $(STATE_DIR) -- rm --all --force >/dev/null || true; \
	fi; \
	$(ECR) dev registry stop --state-dir $(STATE_DIR); \
	$(ECR) dev service stop --state-dir $(STATE_DIR)

test: install ## Run the tests (unit, and integration against a real registry, podman, containerd)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv ## ruff check, ruff format --check, mypy --strict on the package
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ecr_oci

bench: install ## Run the benchmarks (push vs oras/crane/skopeo; service search + indexing; tokens; admission); not a test
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.service
	$(BIN)/python -m benchmarks.tokens
	$(BIN)/python -m benchmarks.admission

lock: ## Regenerate requirements.lock from pyproject.toml (uv, with hashes, for Python 3.11)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes -o requirements.lock \
		--python-version 3.11

clean: ## Stop the demo, then remove .venv, .tools, .run and caches
	-@$(MAKE) --no-print-directory stop
	rm -rf $(VENV) .tools $(STATE_DIR) .pytest_cache .mypy_cache .ruff_cache build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -maxdepth 1 -name '*.egg-info' -exec rm -rf {} +
