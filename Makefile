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
.PHONY: help install test lint voxelize demo bench clean

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

install: $(STAMP) $(VALIDATOR_STAMP) ## create .venv, install voxgan with its test and ray extras, and the glTF validator (npm)

test: $(STAMP) $(VALIDATOR_STAMP) ## install if needed, lint, run the test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP) ## ruff check
	$(BIN)/ruff check .

voxelize: $(STAMP) ## mesh dataset to shards: make voxelize [RECIPE=modelnet40 MESHES=/path SHARDS=shards RES=16]
	@if [ "$(RECIPE)" = "shapes" ] && [ ! -d "$(MESHES)" ]; then \
		$(BIN)/voxgan shapes "$(MESHES)" $(SHAPES_ARGS); fi
	$(BIN)/voxgan voxelize "$(MESHES)" "$(SHARDS)" --recipe $(RECIPE) --resolution $(RES) $(if $(WORKERS),--workers $(WORKERS))

demo: voxelize ## shapes shards, DEMO_MINUTES=10 of training, OBJ + PNG export, evaluation
	$(BIN)/voxgan train --data $(SHARDS) --time-limit $(DEMO_MINUTES) --out runs
	$(BIN)/voxgan export --format obj --num 16 --out exports
	$(BIN)/voxgan export --format png --num 64 --out exports
	$(BIN)/voxgan evaluate --data $(SHARDS) --split test
	@echo "demo done: shards in $(SHARDS)/, the run (samples/, loss.png, stats.jsonl, metrics.jsonl) in" \
		"$$(ls -d runs/[0-9]* | tail -1)/, meshes and the image grid in exports/"

bench: $(STAMP) ## run the speed benchmarks behind BENCHMARKS.md
	$(BIN)/python benchmarks/run.py

clean: ## remove generated shards, runs and exports (keeps data/meshes)
	rm -rf shards runs exports
