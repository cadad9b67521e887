# Set-up: `make demo` and `make test` each create .venv when missing and install into it.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(BIN)/python:
	$(shell command -v $(PY) >/dev/null 2>&1 && echo $(PY) || echo python3) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@if $(BIN)/pip list 2>/dev/null | grep -qi '^nvidia-'; then echo "error: a CUDA build of torch was pulled in; torch==2.13.0 must stay pinned" >&2; exit 1; fi
	@touch $(STAMP)

install: $(STAMP)

# Reduced-scale rot-g2 run (2,000 targets, 1,000 test images; minutes on 2 CPU cores);
# prints initial / ours / oracle accuracy and where the results are.
demo: $(STAMP)
	$(BIN)/scenefit run rot-g2 --out runs/demo-rot-g2 \
		--set setting.n_targets=2000 --set setting.n_test=1000 --set surrogate.max_steps=1000 --set encoder.steps=3000

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf runs .pytest_cache
