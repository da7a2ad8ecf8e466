#!/usr/bin/env bash
# Get this checkout ready to run a grid on a lent GPU machine (the workplace's `device` tool),
# and print the command to give it and the one that merges what comes back.
#
#   tools/device_grid.sh [GRID] [MINUTES] [WORKERS]     # GRID: main | lr | widget (default main)
#
# The machine receives a copy of the working tree but not ../shared, and has no git history, so
# the data sets are copied into .data/uea (git-ignored, named in `carry`) and the records are
# stamped with this commit through LOOPED_SSM_COMMIT. The grid resumes from the committed records
# (copied into $OUT first) and from the checkpoints of configurations left unfinished by an
# earlier call (.ckpt/, carried there; the unfinished ones come back as $OUT/ckpt/*.npz), stops
# after MINUTES (the configurations in progress are checkpointed; keep it well inside the tool's
# 10-minute limit per command) and runs WORKERS processes on the one GPU. The tool brings back at
# most 8 files of at most 16 MB, 64 MB in all, and a 6-block, H = P = 64 checkpoint of 5 seeds is
# about 12 MB: with more than 4 workers, some unfinished configurations start again next time.
set -euo pipefail
cd "$(dirname "$0")/.."
grid=${1:-main}; minutes=${2:-8}; workers=${3:-8}
case $grid in main|lr|widget) ;; *) echo "error: GRID must be main, lr or widget, got '$grid'" >&2; exit 2;; esac
[ "$workers" -gt 4 ] && echo "note: $workers workers leave up to $workers checkpoints of ~12 MB; the device tool brings back 64 MB in all" >&2
src=${LOOPED_SSM_DATA_DIR:-../shared/data/uea}
[ -d "$src" ] || { echo "error: no data folder $src (set LOOPED_SSM_DATA_DIR)" >&2; exit 2; }
mkdir -p .data/uea .ckpt
grep -qxF '/.data/' .gitignore || { echo '/.data/' >> .gitignore; echo 'added /.data/ to .gitignore'; }
grep -qxF '/.ckpt/' .gitignore || { echo '/.ckpt/' >> .gitignore; echo 'added /.ckpt/ to .gitignore'; }
names=$(python3 -m lib.datasets --list)  # the keys of lib.datasets.DATASETS
for n in $names; do
  [ -f "$src/$n.npz" ] && cp -u "$src/$n.npz" .data/uea/
  [ -f "$src/$n.splits.json" ] && cp -u "$src/$n.splits.json" .data/uea/
done
dirty=0; [ -z "$(git status --porcelain --untracked-files=no)" ] || dirty=1  # as lib.run.git_commit
sha=$(git rev-parse HEAD)
out=$grid-full.jsonl
params=""
[ "$grid" = lr ] || params=" --save-params \$OUT/params; mkdir -p \$OUT/params; tar -czf \$OUT/params.tgz -C \$OUT params && rm -rf \$OUT/params"
cat <<MSG
.data/uea: $(ls .data/uea | wc -l) files, $(du -sh .data | cut -f1)
.ckpt: $(ls .ckpt | wc -l) unfinished configurations
device run, carry [".data", ".ckpt"]:
  export LOOPED_SSM_DATA_DIR=.data/uea LOOPED_SSM_COMMIT=$sha LOOPED_SSM_DIRTY=$dirty LOOPED_SSM_RESULTS_DIR=\$OUT LOOPED_SSM_CKPT_DIR=\$OUT/ckpt PYTHONUNBUFFERED=1; cp data/results/$out \$OUT/ 2>/dev/null; mkdir -p \$OUT/ckpt; cp .ckpt/*.npz \$OUT/ckpt/ 2>/dev/null; python3 -m lib.grid --grid $grid --profile full --workers $workers --budget-min $minutes$params
then, here:
  .venv/bin/python -m lib.results merge <files_at>/$out --into data/results/$out
  rm -f .ckpt/*.npz; cp <files_at>/ckpt/*.npz .ckpt/ 2>/dev/null   # the configurations still unfinished
MSG
[ "$grid" = lr ] || echo "  tar -xzf <files_at>/params.tgz -C data   # seed-0 looped models -> data/params/"
exit 0
