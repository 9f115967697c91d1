#!/usr/bin/env bash
# The GPU checks in one run, for a machine with a CUDA GPU (issue 5: the hf backend's throughput
# and the generate stage's overhead; issue 7: LoRA SFT tokens/s and peak memory). Each check
# writes its JSON result and its log to $OUT (default benches/results); one failing check does
# not stop the next.
#
#     bash benches/gpu_checks.sh            # on the GPU machine, from the repository root
#     bash benches/gpu_checks.sh --tiny     # a small model on CPU: checks the script itself
#
# Runs from the source tree (PYTHONPATH=python; build the extension first with
# `maturin develop --release`). Python packages missing on that machine can be carried as
# wheels in .whl/: they are installed into /tmp/site and put first on the path.
set -u
OUT=${OUT:-benches/results}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 - <<'PY' 2>&1 | tee "$OUT/gpu-env.log"
import platform, torch, transformers, pyarrow
print("python", platform.python_version(), "torch", torch.__version__, "transformers", transformers.__version__,
      "pyarrow", pyarrow.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))
PY
status=0
for check in gpu_hf_check gpu_sft_check; do
    name=${check%_check}; name=${name//_/-}
    echo "== $check $*"
    start=$(date +%s)
    python3 "benches/$check.py" --out "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1 || { status=1; echo "$check failed:"; }
    tail -n 25 "$OUT/$name.log"
    echo "== $check: $(( $(date +%s) - start )) s"
done
exit $status
