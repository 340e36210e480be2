# fashionrec: `make demo` and `make test` are the two commands a newcomer needs (both set up first if needed).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Servers only the tests run, in an environment of their own (their dependencies are not the project's): a full
# MLflow tracking server, the same minor version as the project's client, and moto's S3 server.
TOOLS := .tools
TOOLS_STAMP := $(TOOLS)/.installed
TOOL_PINS := "mlflow==3.17.*" "moto[server]==5.*"
# torch comes from local disk here (pip's constraint file caps it); never newer than this.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: help setup test-tools demo test unit integration lint compile images clean
# The images' names: a registry path and a tag (defaults: fashionrec.config, the published ones).
IMAGE_REGISTRY ?=
IMAGE_TAG ?=

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "installing a Java runtime (TorchServe needs one)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	$(BIN)/python -m pip check
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install everything (idempotent)

$(TOOLS_STAMP): Makefile
	@echo "installing the test servers into $(TOOLS)/: an MLflow tracking server and an S3-compatible one (moto)"
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q $(TOOL_PINS)
	touch $(TOOLS_STAMP)

test-tools: $(TOOLS_STAMP) ## what only the tests need: an MLflow server and an S3 server (PyPI, in .tools/), and from Debian: kubectl (renders the kustomize overlays), redis-server (Feast's production online store), prometheus (promtool checks the alert rules; the canary tests run the server), chromium + chromedriver (the gallery's browser tests), buildah + mmdebstrap (the images' tests build both images and run the pipeline's steps in them)
	@command -v kubectl >/dev/null || { echo "installing kubectl (the manifest tests run kustomize)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null; }
	@command -v redis-server >/dev/null || { echo "installing redis-server (the Redis online store tests start one)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { echo "installing prometheus (promtool checks and unit-tests the alert rules; the canary tests scrape the local servers with the server)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v buildah >/dev/null && command -v mmdebstrap >/dev/null || { echo "installing buildah and mmdebstrap (the images are built and run without a Docker engine)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah mmdebstrap uidmap >/dev/null; }
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { echo "installing chromium and chromium-driver (the gallery's browser tests drive them)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }

demo: setup ## generate a catalogue, run the pipeline (kfp.local), serve, query, stop
	$(BIN)/fashionrec demo --workdir work/demo

lint: setup ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

images: setup ## build both images (docker, or buildah where no engine runs): make images IMAGE_REGISTRY=my.registry/team IMAGE_TAG=1.2
	@command -v docker >/dev/null || command -v buildah >/dev/null || $(MAKE) test-tools
	$(BIN)/fashionrec images build $(if $(IMAGE_REGISTRY),--registry $(IMAGE_REGISTRY)) $(if $(IMAGE_TAG),--tag $(IMAGE_TAG))

compile: setup ## compile every pipeline to pipelines/compiled/*.yaml (committed: what users upload in the KFP UI)
	$(BIN)/fashionrec pipeline compile --out pipelines/compiled

unit: setup test-tools ## fast tests only: no server, no training
	$(BIN)/pytest -m "not integration and not behaviour and not trained" -q

integration: setup ## tests that start real servers
	$(BIN)/pytest -m integration -q

test: lint test-tools ## ruff, mypy and every test
	$(BIN)/pytest -q

clean: ## remove build outputs (keeps .venv)
	rm -rf build work .pytest_cache .mypy_cache .ruff_cache
