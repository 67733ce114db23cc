# voxgan: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
RECIPE ?= shapes
MESHES ?= data/meshes/shapes
SHARDS ?= shards
RES ?= 16
SHAPES_ARGS ?=
WORKERS ?=
DEMO_MINUTES ?= 10
GLTF_VALIDATOR ?= 2.0.0-dev.3.10
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_DIR := .cache/npm
VALIDATOR_STAMP := $(NPM_DIR)/node_modules/gltf-validator/.installed-$(GLTF_VALIDATOR)

.DEFAULT_GOAL := help
.PHONY: help install test lint voxelize demo bench clean browser

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: TORCH=$(TORCH) GLTF_VALIDATOR=$(GLTF_VALIDATOR) RECIPE=$(RECIPE) MESHES=$(MESHES) SHARDS=$(SHARDS) RES=$(RES)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,ray]"
	touch $(STAMP)

# the Khronos glTF validator judges the GLB files voxgan writes (tests/results/test_export.py); no npm: it skips
$(VALIDATOR_STAMP):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --silent --no-audit --no-fund --prefix $(NPM_DIR) gltf-validator@$(GLTF_VALIDATOR) && \
		touch $(VALIDATOR_STAMP); \
	else echo "npm not found: the glTF validator test will skip (install Node.js to run it)"; fi

# Debian's chromium opens the HTML pages in the tests (tests/browser.py); only where it is missing and apt-get
# can run as root; elsewhere those tests skip, saying why
browser: ## Debian's chromium for the page tests, where missing (apt-get, as root)
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the page tests (apt-get)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "could not install chromium: the page tests will skip"; \
	else echo "chromium not found and apt-get cannot run as root here: the page tests will skip"; fi

install: $(STAMP) $(VALIDATOR_STAMP) browser ## create .venv, install voxgan with its test and ray extras, the glTF validator (npm), chromium (apt)

test: $(STAMP) $(VALIDATOR_STAMP) browser ## install if needed, lint, run the test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP) ## ruff check
	$(BIN)/ruff check .

voxelize: $(STAMP) ## mesh dataset to shards: make voxelize [RECIPE=modelnet40 MESHES=/path SHARDS=shards RES=16]
	@if [ "$(RECIPE)" = "shapes" ] && [ ! -d "$(MESHES)" ]; then \
		$(BIN)/voxgan shapes "$(MESHES)" $(SHAPES_ARGS); fi
	$(BIN)/voxgan voxelize "$(MESHES)" "$(SHARDS)" --recipe $(RECIPE) --resolution $(RES) $(if $(WORKERS),--workers $(WORKERS))

demo: voxelize ## pretrained samples first, then shapes shards, DEMO_MINUTES=10 of training, exports, evaluation, report
	$(BIN)/voxgan export --pretrained shapes-16-cond --format png --num 40 --out exports
	$(BIN)/voxgan export --pretrained shapes-16-cond --format html --num 40 --out exports
	$(BIN)/voxgan export --pretrained shapes-32-cond --format png --num 40 --out exports
	@echo "pretrained samples (4 of each class): exports/shapes-16-cond.png, exports/shapes-16-cond.html and at 32³ exports/shapes-32-cond.png; now training your own"
	$(BIN)/voxgan train --data $(SHARDS) --time-limit $(DEMO_MINUTES) --out runs
	$(BIN)/voxgan export --format obj --num 16 --out exports
	$(BIN)/voxgan export --format png --num 64 --out exports
	$(BIN)/voxgan export --format html --num 64 --out exports
	$(BIN)/voxgan evaluate --data $(SHARDS) --split test
	@run=$$(ls -d runs/[0-9]* | tail -1); \
	echo "demo done: shards in $(SHARDS)/, the run (samples/, loss.png, stats.jsonl, metrics.jsonl) in $$run/," \
		"meshes, the image grid and a page of 64 samples in 3D in exports/"; \
	echo "report: $$run/report.html (open it in a browser: metrics, curves, samples beside their nearest data)"

bench: $(STAMP) ## run the speed benchmarks behind BENCHMARKS.md
	$(BIN)/python benchmarks/run.py

clean: ## remove generated shards, runs and exports (keeps data/meshes)
	rm -rf shards runs exports
