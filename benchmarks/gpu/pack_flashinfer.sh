#!/usr/bin/env bash
# Pack flashinfer-python for the GPU host, which cannot download it and takes at most 64 MiB of
# carried files: the 100 MB wheel without the sources of kernels other than attention (the
# attention modules JIT-compile there from data/csrc/*.cu, data/include, cutlass and cccl).
#   bash benchmarks/gpu/pack_flashinfer.sh [VERSION]   -> .fi/fi_trim.tgz (about 17 MB)
# On the device (carry .fi next to .whl, whose apache-tvm-ffi wheel it needs):
#   tar xzf .fi/fi_trim.tgz -C /tmp/site; export FLASHINFER_CUDA_ARCH_LIST=9.0a MAX_JOBS=16
set -euo pipefail
VERSION=${1:-0.7.4}
cd "$(dirname "$0")/../.."
grep -qx "/.fi/" .git/info/exclude 2>/dev/null || echo "/.fi/" >> .git/info/exclude
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps -d "$work" "flashinfer-python==$VERSION"
python3 -m pip install -q --no-deps --target "$work/site" "$work"/flashinfer_python-*.whl
# What `import flashinfer` needs that the GPU host has (KINDS.md), here only to find what it loads.
python3 -m pip install -q --no-deps --target "$work/deps" nvidia-ml-py einops tabulate cuda-bindings \
  cuda-pathfinder "apache-tvm-ffi<0.2"
pkg="$work/site/flashinfer"
find "$pkg/data/csrc" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +  # other kernels' sources
# Outside data/, only Python and JSON: other kernels' sources live next to their modules.
find "$pkg" -path "$pkg/data" -prune -o -type f ! -name '*.py' ! -name '*.json' -print0 | xargs -0 rm -f
find "$pkg" -name __pycache__ -prune -exec rm -rf {} +
# Large families of modules that `import flashinfer` and the attention wrappers never load.
for sub in experimental moe_ep fused_moe cute_dsl; do
  python3 - "$work/site" "$sub" "$work/deps" <<'PY'
import os, sys
site, sub, deps = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:0] = [site, deps]
import flashinfer  # noqa: F401
from flashinfer import BatchDecodeWithPagedKVCacheWrapper, BatchPrefillWithPagedKVCacheWrapper  # noqa: F401
loaded = {os.path.realpath(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
for dp, _, fns in os.walk(os.path.join(site, "flashinfer", sub)):
    for fn in fns:
        path = os.path.realpath(os.path.join(dp, fn))
        if path not in loaded:
            os.remove(path)
PY
done
mkdir -p .fi
tar czf .fi/fi_trim.tgz -C "$work/site" flashinfer "flashinfer_python-$VERSION.dist-info"
ls -la .fi/fi_trim.tgz
