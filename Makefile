# lrlab: `make run` (set up what is missing, then the demo) and `make test`.
# libtorch: a user's own LIBTORCH (or LIBTORCH_USE_PYTORCH) wins; otherwise the PyPI wheel
# torch==2.13.0 is installed once into $(LRLAB_CACHE) (default ~/.cache/lrlab) and linked as
# .libtorch, which .cargo/config.toml hands to cargo: plain `cargo build/test/run` work too.
SHELL := /bin/bash
LRLAB_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/lrlab
export LRLAB_CACHE
TORCH_DIR := $(LRLAB_CACHE)/torch-2.13.0
CARGO ?= cargo
BIN := target/release/lrlab

# Without a libtorch of the user's, cargo takes LIBTORCH from .cargo/config.toml (the same
# value as a plain `cargo build`, so torch-sys is not rebuilt between the two).
ifeq ($(origin LIBTORCH)$(LIBTORCH_USE_PYTORCH),undefined)
LIBTORCH_DEP := libtorch
endif

.PHONY: all setup libtorch data gloo build run test test-repeat check fmt clippy golden bench gallery reproduce bundle check-torch gpu-bundle clean

all: build

setup: $(LIBTORCH_DEP) data gloo

libtorch:
	@scripts/libtorch.sh "$(TORCH_DIR)"
	@[ "$$(readlink .libtorch 2>/dev/null)" = "$(TORCH_DIR)/torch" ] || ln -sfn "$(TORCH_DIR)/torch" .libtorch

data:
	@scripts/fashion-mnist.sh

gloo:
	@scripts/gloo.sh

build: $(LIBTORCH_DEP) gloo
	$(CARGO) build --release --locked

# The main job: the default demo on real data. A second `make run` resumes or skips what is done.
run: setup build
	@$(MAKE) --no-print-directory gallery >/dev/null
	$(BIN) sweep runs/demo.toml --jobs 2
	@$(BIN) report out/demo >/dev/null
	@echo "per run: out/demo/summary.csv"
	@echo
	@echo "report:    out/demo/report.md"
	@echo "figures:   out/demo/figures/ (curves.png with the time-to-accuracy marks, schedule.png, the range test lr_find_*.png)"
	@echo "schedules: results/schedules/ (the papers' schedules rendered from runs/schedules/)"

# Render every schedule spec of runs/schedules/ into results/schedules/ (CSV + SVG figure).
gallery: build
	@mkdir -p results/schedules
	@for f in runs/schedules/*.toml; do \
	    n=$$(basename $$f .toml); \
	    $(BIN) schedule $$f -o results/schedules/$$n.csv --plot results/schedules/$$n.svg || exit 1; \
	    echo "results/schedules/$$n.csv  results/schedules/$$n.svg"; \
	done

# The CPU-scale reproductions of runs/cpu/ (about an hour on 2 cores); results in results/cpu/.
reproduce: setup build
	LRLAB=$(BIN) scripts/reproduce_cpu.sh

test: setup
	$(CARGO) test --release --locked

# The whole suite N times in a row, stopping at the first failure (`make test-repeat N=5`).
N ?= 5
test-repeat: setup
	CARGO=$(CARGO) scripts/test-repeat.sh $(N)

check: fmt clippy test

# lrlab for another installed PyTorch release (2.10.0, 2.11.0 or 2.13.0): its wheel is
# installed into the cache, the sources are built in target/torch-$(TORCH)/ with the tch
# release made for it, and dist/lrlab-torch$(TORCH)/lrlab runs on the machine's own PyTorch.
TORCH ?= 2.13.0
bundle:
	scripts/bundle.sh $(TORCH) build

# The CPU test suite built and run against release $(TORCH) (keeps the sources building on it).
check-torch:
	scripts/bundle.sh $(TORCH) check

# dist/gpu-check/: the bundle, the test binaries that exercise CUDA and run.sh, for a GPU
# machine with only its own PyTorch: `dist/gpu-check/run.sh RESULTS_DIR` there.
gpu-bundle:
	scripts/gpu-bundle.sh $(TORCH)

fmt:
	$(CARGO) fmt --check

clippy: $(LIBTORCH_DEP)
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

# Regenerate the PyTorch reference sequences in tests/golden/ (needs the torch wheel above;
# scripts/golden_lr_find.py also needs fastai, see its header).
# timm (for its schedules' goldens), torchvision (which timm imports) and Keras 3 (run on the
# torch backend; its own dependencies in a folder of their own) go into the cache.
GOLDEN_LIBS := $(LRLAB_CACHE)/golden-libs
golden: $(LIBTORCH_DEP)
	@PYTHONPATH="$(GOLDEN_LIBS):$(TORCH_DIR)" python3 -c 'import timm.scheduler' 2>/dev/null || \
	    python3 -m pip install -q --no-deps --target "$(GOLDEN_LIBS)" timm==1.0.31 torchvision==0.28.0 pillow numpy
	@KERAS_BACKEND=torch PYTHONPATH="$(GOLDEN_LIBS)-keras:$(TORCH_DIR)" python3 -c 'import keras' 2>/dev/null || \
	    python3 -m pip install -q --target "$(GOLDEN_LIBS)-keras" keras==3.15.1
	KERAS_BACKEND=torch PYTHONPATH="$(GOLDEN_LIBS):$(GOLDEN_LIBS)-keras:$(TORCH_DIR)$${PYTHONPATH:+:$$PYTHONPATH}" python3 scripts/golden_schedules.py tests/golden
	PYTHONPATH="$(TORCH_DIR)$${PYTHONPATH:+:$$PYTHONPATH}" python3 scripts/golden_optim.py tests/golden
	PYTHONPATH="$(TORCH_DIR)$${PYTHONPATH:+:$$PYTHONPATH}" python3 scripts/golden_curvature.py tests/golden

clean:
	$(CARGO) clean
