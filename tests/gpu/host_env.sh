# Sourced by the scripts in tests/gpu (repo root): makes evotune runnable on a lent GPU host.
# Packages the host lacks travel as wheels in .whl/ (and Ray as .whl/ray-slim.tar.xz, from
# tests/gpu/pack_ray.sh); they go to /tmp/site once, so scripts started later, also in
# parallel, find them there. Exports PYTHONPATH (site, then the repo), unbuffered output and a
# wide console for the logs.
site=/tmp/site
if ! PYTHONPATH=$site python3 -c "import sqlalchemy, alembic, optuna, pydantic, fastapi" 2>/dev/null; then
  ls .whl/*.whl >/dev/null 2>&1 || { echo "evotune's packages are missing and .whl/ is empty" >&2; return 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl || return 1
fi
if [ -f .whl/ray-slim.tar.xz ] && ! PYTHONPATH=$site python3 -c "import ray" 2>/dev/null; then
  tar -xJf .whl/ray-slim.tar.xz -C "$site" || return 1
fi
export PYTHONPATH=$site:$PWD PYTHONUNBUFFERED=1 COLUMNS=160
