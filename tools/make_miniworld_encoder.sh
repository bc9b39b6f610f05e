#!/usr/bin/env bash
# Rebuild the mini world's committed encoder (drfhq_lib/miniworld/networks/encoder-miniworld-R64)
# after `drfhq miniworld train` has built G_rendering_mini: about 40 minutes on 2 idle CPU cores
#
# The encoder's real inputs are R renders of seed 1 (the fine-tuning set's identities and more),
# never of seed 2 (the held-out identities every benchmark scores); ids 1218-1249 are kept apart
# for --val-images. It was trained in two commands: 12 kimg on the fine-tuning set's 250 R
# renders, then continued on 1218 (to 36 kimg, then 40; its log records where the set changed).
set -euo pipefail
runs=${RUNS:-runs/miniworld/aligned}
run=${RUN:-runs/encoder-miniworld-R64}
common=(--generator stylegan2-miniworld-R64 --out "$run" --batch 8 --lpips-weight 1.0
        --real-lpips-weight 1.0 --snapshot-kimg 1)

drfhq miniworld render --count 1250 --seed 1 --size 128 --workers 2 --out "$runs/encoder-renders"
python - "$runs" <<'EOF'
import shutil, sys
from pathlib import Path
from drfhq_lib.miniworld import aligned

runs = Path(sys.argv[1])
aligned.align_folder(runs / "encoder-renders", runs / "encoder", 64)
(runs / "encoder-val" / "R").mkdir(parents=True, exist_ok=True)
for index in range(1218, 1250):
    name = f"{index:06d}.png"
    if (runs / "encoder" / "R" / name).exists():
        shutil.move(runs / "encoder" / "R" / name, runs / "encoder-val" / "R" / name)
subset = runs / "encoder-first250" / "R"
subset.mkdir(parents=True, exist_ok=True)
for index in range(250):
    name = f"{index:06d}.png"
    shutil.copyfile(runs / "encoder" / "R" / name, subset / name)
EOF
drfhq encoder train "${common[@]}" --images "$runs/encoder-first250/R" --kimg 12
# each --kimg sets its own learning-rate schedule: the committed encoder took these three steps
drfhq encoder train "${common[@]}" --images "$runs/encoder/R" \
    --val-images "$runs/encoder-val/R" --kimg 36
drfhq encoder train "${common[@]}" --images "$runs/encoder/R" \
    --val-images "$runs/encoder-val/R" --kimg 40 \
    --export drfhq_lib/miniworld/networks/encoder-miniworld-R64.safetensors
