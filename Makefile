# FCM Studio: the two commands of the README, and their parts.
#   make app    install, then serve the dashboard on http://localhost:8501 (offline default detector)
#   make test   install, then run every test (fast, slow end-to-end and real-browser ones)
#   make test-all  every test, without the install step (the environment is already set up)
PYTHON ?= python3
PIP := $(PYTHON) -m pip
PORT ?= 8501

.PHONY: install install-browser install-clips app test test-fast test-all bench clean

install:
	$(PIP) install --upgrade pip >/dev/null
	$(PIP) install -e ".[test]"
	# CompressAI without its numpy<2 pin (see README, "Dependencies"); its run-time
	# imports are in pyproject's dependencies.
	$(PIP) install --no-deps -r requirements-compressai.txt
	$(PYTHON) -c "import fcmcore.models, compressai, cv2, numpy; print('fcmcore ready, numpy', numpy.__version__)"

# Debian's Chromium for the real-browser test (Playwright drives the system browser).
install-browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium (needed by the browser test)"; exit 1; fi; }
	@chromium --version

# Debian's opencv-doc: its example clips (vtest.avi) are the real video the video tests run on.
install-clips:
	@test -f /usr/share/doc/opencv-doc/examples/data/vtest.avi || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opencv-doc >/dev/null; \
	  else echo "note: opencv-doc is missing (sudo apt-get install opencv-doc): the vtest.avi test will skip"; fi; }

app: install
	$(PYTHON) app/serve.py --server.port $(PORT)

# pytest's exit 5 ("no tests collected") is a failure here, said in words.
PYTEST_ALL = $(PYTHON) -m pytest -m "" -q; code=$$?; \
	[ $$code -ne 5 ] || echo "error: pytest collected no tests (exit 5)" >&2; exit $$code

test: install install-browser install-clips
	$(PYTEST_ALL)

test-all: install-browser
	$(PYTEST_ALL)

# The quick loop while developing: no end-to-end or browser tests, no install step.
test-fast:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) benchmarks/pipeline_vs_detector.py

clean:
	rm -rf build *.egg-info .pytest_cache
