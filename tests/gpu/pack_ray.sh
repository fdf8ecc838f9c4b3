#!/usr/bin/env bash
# Pack Ray for a GPU host that lacks it, within a device call's 64 MiB carry: the ray wheel
# (~80 MB) unpacked without what evotune never loads (Java jars, RLlib, Data, Serve, Train,
# Tune, LLM, the dashboard's web client) and xz-compressed (~20 MB), plus the wheels of its
# dependencies that the host lacks (the jsonschema family). Run here, in the repo root:
#   bash tests/gpu/pack_ray.sh [RAY_VERSION]        # default: the version installed here
# Then carry .whl; on the host, `source tests/gpu/host_env.sh` unpacks it into /tmp/site.
set -euo pipefail
version=${1:-$(python3 -c "import importlib.metadata as m; print(m.version('ray'))" 2>/dev/null || true)}
[ -n "$version" ] || { echo "ray is not installed here: give RAY_VERSION" >&2; exit 2; }
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
fetch() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$1" "${@:2}"
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p .whl
fetch "$work" "ray==$version"
fetch .whl jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
mkdir "$work/site"
python3 -m zipfile -e "$work"/ray-*.whl "$work/site"
rm -rf "$work"/site/ray/{jars,rllib,data,serve,train,tune,llm} "$work/site/ray/dashboard/client/build"
find "$work/site" -type f \( -name raylet -o -name gcs_server -o -name '*.so' \) -exec chmod +x {} +
tar -C "$work/site" -cf - . | xz -9 -T0 >.whl/ray-slim.tar.xz
ls -la .whl/ray-slim.tar.xz
