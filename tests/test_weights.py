import bz2
import hashlib
import http.server
import threading

import pytest

from drfhq_lib.nets import weights
from drfhq_lib.cli import main as cli_main
from drfhq_lib.errors import ChecksumError, DrfhqError, MissingWeightsError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, so a truncated response is clearly partial
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves /good, /truncated (first answer cut in half), /bad (wrong bytes), /good.bz2."""

    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0])
        type(self).requests.append((self.path, start))
        body = {"/good": PAYLOAD, "/truncated": PAYLOAD, "/bad": PAYLOAD[::-1],
                "/good.bz2": bz2.compress(PAYLOAD)}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path == "/truncated" and start == 0:
            self.wfile.write(body[: len(body) // 2])  # then close: the client sees a short read
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_registry_covers_every_network_of_the_paper():
    expected = {"stylegan2-ffhq", "lpips-vgg16", "inception-fid", "dfe-sketch",
                "bisenet-faceparse", "curricularface", "dlib-landmarks68",
                "dlib-face-descriptor", "hed"}
    assert expected <= set(weights.NETWORKS)
    for net in weights.NETWORKS.values():
        assert net.filename and net.source
        if net.substitute and net.substitute.uses:
            assert net.substitute.uses in weights.NETWORKS
            assert net.substitute.label != net.name  # a substitute never wears the official name


def test_unknown_network_names_the_known_ones():
    with pytest.raises(DrfhqError, match="stylegan2-ffhq"):
        weights.get("stylegan3")


def test_missing_official_file_error_names_file_url_and_env(empty_weights):
    with pytest.raises(MissingWeightsError) as err:
        weights.resolve("stylegan2-ffhq", prefer="official")
    text = str(err.value)
    assert "ffhq.pkl" in text and "DRFHQ_WEIGHTS" in text and str(empty_weights) in text
    assert "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl" in text


def test_auto_falls_back_to_labelled_substitute(empty_weights):
    r = weights.resolve("stylegan2-ffhq", prefer="auto")
    assert (r.kind, r.label) == ("substitute", "stylegan2-miniworld-P64")
    assert r.path.name == "stylegan2-miniworld-P64.safetensors"  # committed in the project
    assert not r.is_official


def test_official_file_in_weights_folder_is_preferred(empty_weights):
    (empty_weights / "ffhq.pkl").write_bytes(b"not really a network")
    r = weights.resolve("stylegan2-ffhq")
    assert r.kind == "official" and r.path == empty_weights / "ffhq.pkl"
    assert r.sha256 == hashlib.sha256(b"not really a network").hexdigest()
    assert weights.resolve("stylegan2-ffhq", prefer="substitute").kind == "substitute"


def test_torch_hub_cache_is_searched(empty_weights, tmp_path):
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "vgg16-397923af.pth").write_bytes(b"x")
    with pytest.raises(ChecksumError, match="397923af"):  # found there, then verified
        weights.resolve("lpips-vgg16", prefer="official")


def test_checksum_mismatch_of_a_user_file(empty_weights):
    (empty_weights / "shape_predictor_68_face_landmarks.dat").write_bytes(b"damaged")
    with pytest.raises(ChecksumError) as err:
        weights.official_path("dlib-landmarks68")
    assert "shape_predictor_68_face_landmarks.dat" in str(err.value)
    assert weights.NETWORKS["dlib-landmarks68"].sha256 in str(err.value)


def test_substitute_missing_its_file_says_how_to_install(empty_weights):
    with pytest.raises(MissingWeightsError, match="install-substitutes"):
        weights.resolve("lpips-vgg16", prefer="substitute")


def test_download_good_file(server, tmp_path):
    dest = weights.download(f"{server}/good", tmp_path / "f.bin", sha256=DIGEST, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not list(tmp_path.glob("*.part"))


def test_download_resumes_after_a_truncated_response(server, tmp_path):
    _Handler.requests.clear()
    dest = weights.download(f"{server}/truncated", tmp_path / "f.bin", sha256=DIGEST,
                            progress=False)
    assert dest.read_bytes() == PAYLOAD
    starts = [s for p, s in _Handler.requests if p == "/truncated"]
    assert starts[0] == 0 and starts[1] == len(PAYLOAD) // 2  # second request asked for the rest


def test_download_resumes_a_part_file_left_by_an_earlier_run(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    _Handler.requests.clear()
    dest = weights.download(f"{server}/good", tmp_path / "f.bin", sha256=DIGEST, progress=False)
    assert dest.read_bytes() == PAYLOAD and _Handler.requests == [("/good", 1000)]


def test_download_with_wrong_checksum_is_refused_and_cleaned(server, tmp_path):
    with pytest.raises(ChecksumError, match=DIGEST):
        weights.download(f"{server}/bad", tmp_path / "f.bin", sha256=DIGEST, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_decompresses_bz2(server, tmp_path):
    dest = weights.download(f"{server}/good.bz2", tmp_path / "f.dat", sha256=DIGEST,
                            compression="bz2", progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_download_missing_url_is_a_clear_error(server, tmp_path):
    with pytest.raises(DrfhqError, match="HTTP 404"):
        weights.download(f"{server}/nothing", tmp_path / "f.bin", progress=False)


def test_fetch_uses_registry_entry(server, empty_weights, monkeypatch):
    entry = weights.NETWORKS["dlib-landmarks68"]
    fake = weights.Network(**{**entry.__dict__, "url": f"{server}/good.bz2", "sha256": DIGEST})
    monkeypatch.setitem(weights.NETWORKS, "dlib-landmarks68", fake)
    path = weights.fetch("dlib-landmarks68", progress=False)
    assert path == empty_weights / "shape_predictor_68_face_landmarks.dat"
    assert weights.resolve("dlib-landmarks68").path == path


def test_cli_table_lists_every_network(capsys):
    assert cli_main(["weights"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[1].split()
    assert header == ["network", "use", "label", "found", "sha256"]
    for name in weights.NETWORKS:
        assert f"\n{name} " in out


def test_cli_reports_missing_official_file(empty_weights, capsys):
    assert cli_main(["weights", "path", "stylegan2-ffhq", "--prefer", "official"]) == 2
    assert "ffhq.pkl" in capsys.readouterr().err


def test_cli_names_url_file_and_folder_of_hand_downloads(empty_weights, capsys):
    assert cli_main(["weights"]) == 0
    out = capsys.readouterr().out
    hand = out.split("Download by hand")[1].splitlines()[1:]
    assert len(hand) == 3  # dfe-sketch, bisenet-faceparse, curricularface
    for name in ("dfe-sketch", "bisenet-faceparse", "curricularface"):
        net = weights.get(name)
        line = next(l for l in hand if l.strip().startswith(name + ":"))
        url, _ = weights.manual_download(net)
        assert url.startswith("https://drive.google.com/") and url in line
        assert f"save it as {empty_weights / net.filename}" in line
    assert "take checkpoints/sketch_generator.pkl out of it" in out


def test_missing_hand_download_message_names_url_and_destination(empty_weights):
    with pytest.raises(MissingWeightsError) as err:
        weights.official_path("bisenet-faceparse")
    assert "drive.google.com/open?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812" in str(err.value)
    assert str(empty_weights / "79999_iter.pth") in str(err.value)
