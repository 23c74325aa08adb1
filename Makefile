# Two commands are the whole set-up on a fresh clone: `make test` and `make demo`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test test-slow demo bench lint clean

setup: $(STAMP)

# torch/torchvision (and the optional OpenVINO engine: openvino, nncf; the web page: gradio) are pinned here so
# tests and benches cover them; pyproject keeps ranges (extras `openvino`, `ui`). playwright (dev extra) drives
# the system chromium in the browser test; `playwright install` (a browser download) is never run.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q --disable-pip-version-check openvino==2026.4.1 nncf==3.4.0
	$(BIN)/pip install -q --disable-pip-version-check gradio==6.31.0 gradio_client==2.7.2 playwright==1.65.3
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,ui]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

# exit code 5 (no test selected) is not a failure here
test-slow: setup
	$(BIN)/python -m pytest -q -m slow; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

demo: setup
	@mkdir -p out
	$(BIN)/retarget video --source examples/source.jpg --driver examples/driver.mp4 -o out/demo.mp4 --overwrite
	@echo "demo output: $(CURDIR)/out/demo.mp4"

bench: setup
	$(BIN)/python bench/video.py

lint: setup
	$(BIN)/ruff check --select E,F,W retarget densepose_adapter tests bench examples

clean:
	rm -rf out .pytest_cache
