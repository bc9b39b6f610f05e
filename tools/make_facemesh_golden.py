"""Make tests/data/facemesh_golden: the face mesh network's outputs as Google's TFLite runtime
(LiteRT) computes them, the oracle of tests/test_align.py's check of drfhq_lib.nets.facemesh.

Runs in a separate environment with ai-edge-litert (its wheels pin nothing of ours), e.g.

    python3 -m venv /tmp/litert && /tmp/litert/bin/pip install ai-edge-litert pillow
    /tmp/litert/bin/python tools/make_facemesh_golden.py ~/.cache/drfhq/face_landmark.tflite

Input: a 192 px crop of samples/renders/ava_portrait.png (CC0), saved as crop.png, and its
mirror image (the test flips crop.png itself). Output: expected.json with, per input, the 468
points (x, y, z in crop pixels) and the face-presence logit.
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from ai_edge_litert.interpreter import Interpreter

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "facemesh_golden"
CROP_BOX = (140, 100, 366, 326)  # around the face of ava_portrait.png (512 px)


def main(model: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    crop = Image.open(ROOT / "samples" / "renders" / "ava_portrait.png").convert("RGB")
    crop = crop.crop(CROP_BOX).resize((192, 192), Image.Resampling.BILINEAR)
    crop.save(OUT / "crop.png")
    pixels = np.asarray(Image.open(OUT / "crop.png"), np.float32) / 255.0
    net = Interpreter(model_path=model)
    net.allocate_tensors()
    expected = {}
    for name, x in (("crop", pixels), ("mirrored", pixels[:, ::-1])):
        net.set_tensor(net.get_input_details()[0]["index"], np.ascontiguousarray(x)[None])
        net.invoke()
        points, logit = (net.get_tensor(d["index"]) for d in net.get_output_details())
        expected[name] = {"points": np.round(points.reshape(468, 3), 4).tolist(),
                          "presence_logit": round(float(logit.ravel()[0]), 4)}
    expected["source"] = {"model": Path(model).name, "runtime": "ai-edge-litert",
                          "image": "samples/renders/ava_portrait.png", "crop_box": CROP_BOX,
                          "resize": "PIL bilinear to 192x192", "input": "RGB / 255"}
    (OUT / "expected.json").write_text(json.dumps(expected) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
