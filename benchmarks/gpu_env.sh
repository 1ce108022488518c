# Sourced by the GPU scripts: sets PY to a python that imports cdul, its packages and torch.
# Works in the project's .venv, or with a system python3 holding torch (then wheels found
# in .whl/ are installed to /tmp/site and the repository is assembled as the cdul package).
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY="${PY:-python3}"
[ -x .venv/bin/python ] && PY=.venv/bin/python
if [ -d .whl ] && ! "$PY" -c "import zarr, open_clip" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import cdul.kernels, cdul.benchmarks" 2>/dev/null; then
  rm -rf /tmp/pkg && mkdir -p /tmp/pkg && cp -r cdul /tmp/pkg/cdul
  for part in kernels extractor store trainer benchmarks; do cp -r "$part" "/tmp/pkg/cdul/$part"; done
  export PYTHONPATH="/tmp/pkg${PYTHONPATH:+:$PYTHONPATH}"
  PY="$PY -P"  # the repository's own cdul/ folder must not shadow the assembled package
fi
