#!/usr/bin/env bash
# Get this checkout ready to run a grid on another machine that has no Ray cluster in common with
# this one (a GPU box you copy files to, a batch node), and print the command to run there and the
# ones that bring the results home.
#
#   tools/copy_grid.sh [GRID] [PROFILE] [MINUTES]     # defaults: main full 50
#
# Copy the working tree with .data/ and .ckpt/ to the machine (rsync, scp, a shared disk): the data
# sets are copied into .data/uea (git-ignored) because the machine may not have ../shared, and the
# records are stamped with this commit through LOOPED_SSM_COMMIT because the copy may have no git
# history. There, the grid resumes from the committed records and from the checkpoints in .ckpt/,
# runs every configuration as a task on a local Ray instance (every GPU, or every CPU core), and
# stops after MINUTES (the configurations in progress are checkpointed). Bring back OUT/ (records,
# checkpoints, saved models) and run the printed merge commands here.
set -euo pipefail
cd "$(dirname "$0")/.."
grid=${1:-main}; profile=${2:-full}; minutes=${3:-50}
case $grid in main|lr|widget|budget) ;; *) echo "error: GRID must be main, lr, widget or budget, got '$grid'" >&2; exit 2;; esac
case $profile in full|budget|smoke) ;; *) echo "error: PROFILE must be full, budget or smoke, got '$profile'" >&2; exit 2;; esac
src=${LOOPED_SSM_DATA_DIR:-../shared/data/uea}
[ -d "$src" ] || { echo "error: no data folder $src (set LOOPED_SSM_DATA_DIR)" >&2; exit 2; }
mkdir -p .data/uea .ckpt
grep -qxF '/.data/' .gitignore || { echo '/.data/' >> .gitignore; echo 'added /.data/ to .gitignore'; }
grep -qxF '/.ckpt/' .gitignore || { echo '/.ckpt/' >> .gitignore; echo 'added /.ckpt/ to .gitignore'; }
py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python
names=$($py -m lib.datasets --list)  # the keys of lib.datasets.DATASETS
for n in $names; do
  [ -f "$src/$n.npz" ] && cp -u "$src/$n.npz" .data/uea/
  [ -f "$src/$n.splits.json" ] && cp -u "$src/$n.splits.json" .data/uea/
done
dirty=0; [ -z "$(git status --porcelain --untracked-files=no)" ] || dirty=1  # as lib.provenance.git_commit
sha=$(git rev-parse HEAD)
out=$grid-$profile.jsonl
cat <<MSG
.data/uea: $(ls .data/uea | wc -l) files, $(du -sh .data | cut -f1); .ckpt: $(ls .ckpt | wc -l) unfinished configurations
copy this folder (with .data/ and .ckpt/) to the machine; there, after 'pip install -r requirements.txt'
(and requirements-gpu.txt on a GPU), with OUT a folder you will copy back:
  export LOOPED_SSM_DATA_DIR=.data/uea LOOPED_SSM_COMMIT=$sha LOOPED_SSM_DIRTY=$dirty LOOPED_SSM_RESULTS_DIR=\$OUT LOOPED_SSM_CKPT_DIR=\$OUT/ckpt
  mkdir -p \$OUT/ckpt; cp data/results/$out \$OUT/ 2>/dev/null; cp .ckpt/*.npz \$OUT/ckpt/ 2>/dev/null
  python -m lib.grid --grid $grid --profile $profile --budget-min $minutes --save-params \$OUT/params
then, here, with OUT copied back:
  .venv/bin/python -m lib.results merge OUT/$out --into data/results/$out
  rm -f .ckpt/*.npz; cp OUT/ckpt/*.npz .ckpt/ 2>/dev/null   # the configurations still unfinished
  cp -n OUT/params/* data/params/ 2>/dev/null                # saved looped models
MSG
exit 0
