"""Face masks: the dlib-landmark substitute on a real photo, BiSeNet from a state dict with the
official names, and the class union of Sec. 8."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DATA
from drfhq_lib.nets import faceparse
from drfhq_lib.data import landmarks
from drfhq_lib.errors import CheckpointFormatError, MissingWeightsError, NoFaceError
from drfhq_lib.data.images import pil_to_tensor, tensor_to_uint8


@pytest.fixture(scope="module")
def obama():
    return pil_to_tensor(Image.open(DATA / "obama.jpg"))


def test_class_indices_are_zllrunnings():
    assert faceparse.CLASSES[1] == "skin" and faceparse.CLASSES[9] == "ear_r"
    assert faceparse.CLASSES[17] == "hair" and faceparse.CLASSES[18] == "hat"
    assert faceparse.FACE_CLASSES == (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 17)


def test_mask_from_labels_is_the_union_of_face_classes():
    labels = torch.arange(19).view(1, 1, 19).expand(1, 2, 19)
    mask = faceparse.mask_from_labels(labels)
    assert mask.shape == (1, 1, 2, 19)
    assert mask[0, 0, 0].tolist() == [float(i in faceparse.FACE_CLASSES) for i in range(19)]


def test_landmark_mask_covers_eyes_and_mouth_and_not_the_corners(obama):
    mask, resolved = faceparse.face_mask(obama, prefer="substitute")
    assert resolved.label == "mask[dlib-68-hull]" and not resolved.is_official
    assert mask.shape == (1, 1, 480, 384) and set(mask.unique().tolist()) <= {0.0, 1.0}
    lm, _ = landmarks.face_landmarks(tensor_to_uint8(obama)[0])
    m = mask[0, 0].numpy()
    for x, y in np.round(lm[36:68]).astype(int):  # eyes, nose bottom, mouth
        assert m[y, x] == 1, (x, y)
    brows_top = lm[17:27, 1].min()
    assert m[: int(brows_top) - 10, int(lm[27, 0])].any()  # forehead above the brows
    for y, x in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert m[y, x] == 0
    assert 0.03 < m.mean() < 0.3


def test_landmark_mask_without_a_face_names_the_image(obama):
    face = obama[..., 40:340, 40:340]
    with pytest.raises(NoFaceError, match="image 1"):
        faceparse.face_mask(torch.cat([face, torch.zeros_like(face)]), prefer="substitute")


# ----------------------------------------------------------------------------- BiSeNet


@pytest.fixture(scope="module")
def fake_bisenet(tmp_path_factory):
    torch.manual_seed(0)
    state = faceparse.BiSeNet().state_dict()
    path = tmp_path_factory.mktemp("fp") / "79999_iter.pth"
    torch.save(state, path)
    return path, state


def test_bisenet_has_the_official_parameter_names():
    shapes = {k: tuple(v.shape) for k, v in faceparse.BiSeNet().state_dict().items()}
    expected = {
        "cp.resnet.conv1.weight": (64, 3, 7, 7),
        "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "cp.resnet.layer4.1.bn2.running_var": (512,),
        "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
        "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
        "cp.conv_avg.conv.weight": (128, 512, 1, 1),
        "ffm.convblk.conv.weight": (256, 256, 1, 1),
        "ffm.conv1.weight": (64, 256, 1, 1),
        "conv_out.conv_out.weight": (19, 256, 1, 1),
        "conv_out16.conv.conv.weight": (64, 128, 3, 3),
        "conv_out32.conv_out.weight": (19, 64, 1, 1),
    }
    for name, shape in expected.items():
        assert shapes[name] == shape, name
    assert not any(k.startswith("sp.") or "fc" in k for k in shapes)


def test_bisenet_construction_downloads_nothing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("BiSeNet tried to download")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    faceparse.BiSeNet()


def test_face_mask_official_loads_strictly_and_runs(empty_weights, fake_bisenet, obama):
    path, state = fake_bisenet
    (empty_weights / path.name).symlink_to(path)
    net = faceparse.load_bisenet(path)
    torch.testing.assert_close(net.cp.resnet.layer3[1].conv2.weight,
                               state["cp.resnet.layer3.1.conv2.weight"])
    small = torch.nn.functional.interpolate(obama, (96, 80))
    mask, resolved = faceparse.face_mask(small, prefer="official", net=net)
    assert resolved.is_official and resolved.label == "bisenet-faceparse"
    assert mask.shape == (1, 1, 96, 80) and set(mask.unique().tolist()) <= {0.0, 1.0}
    labels = faceparse.parse(net, small)
    assert labels.shape == (1, 96, 80) and labels.max() < 19


def test_another_network_is_refused(tmp_path):
    path = tmp_path / "79999_iter.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointFormatError, match="BiSeNet"):
        faceparse.load_bisenet(path)


def test_official_or_fail_names_file_and_url(empty_weights, obama):
    with pytest.raises(MissingWeightsError) as err:
        faceparse.face_mask(obama, prefer="official")
    assert "79999_iter.pth" in str(err.value)
    assert "https://drive.google.com/" in str(err.value)
