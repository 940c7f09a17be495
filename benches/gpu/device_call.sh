#!/usr/bin/env bash
# One device call (see benches/gpu/NOTES.md): install the carried wheels, then run a GPU script
# under a time guard that leaves room for the results to come back. Everything is written under
# $OUT as it goes (train_bench.py rewrites table.md and bench.json after each variant), so a call
# that runs out of time still returns what finished. A call brings back at most 8 files, so the
# table, bench.json and up to four profiles come back as they are and everything else in all.tgz.
#
#   carry: [".gpu"]   (.gpu/whl: the wheels from shared/gpu.md plus pydantic; .gpu/split: a split)
#   command: bash benches/gpu/device_call.sh 540 benches/gpu/train_bench.py --variants seed-qlora@20,lean@50 --warmup 3
#
# The first argument is the guard in seconds: keep it under the call's 600 s limit, minus about
# 30 s for the pip install.
set -u
guard=${1:?seconds}; shift
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .gpu/whl/*.whl >/dev/null 2>&1 \
  || { echo "device_call: pip install of .gpu/whl failed (carry .gpu?)"; exit 2; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
out=${OUT:-/tmp/out}/r; mkdir -p "$out"
timeout "$guard" python3 "$@" --out "$out" 2>&1 | tail -40
rc=${PIPESTATUS[0]}
for f in "$out"/*.log; do [ -f "$f" ] && tail -c 4000 "$f" > "$f.tail" && rm "$f"; done
ls "$out"
# a call returns at most 8 files: the table, the json and the profiles as they are, the rest packed
top=${OUT:-/tmp/out}
cp "$out"/table.md "$out"/bench.json "$top"/ 2>/dev/null
ls "$out"/*.profile.txt 2>/dev/null | head -4 | xargs -r -I{} cp {} "$top"/
tar czf "$top/all.tgz" -C "$out" . && rm -rf "$out"
exit "$rc"
