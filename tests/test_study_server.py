"""`drfhq study serve` over HTTP on loopback: 24 participants at once (nothing lost, latency),
isolation between participants, no file outside the study, no code execution, status."""

import csv
import io
import statistics
import threading
import time
from pathlib import Path

import pytest

from drfhq_lib import cli
from drfhq_lib.apps import study_server
from drfhq_lib.eval import study as st
from drfhq_lib.eval import study_files, study_responses
from study_web import (Client, Server, build_study_dir, fetch_image, method_of_file, participate,
                       screen)

PARTICIPANTS = 24  # the paper's Fig. 15 count, all at once
SETS, PAIRS = st.PAPER_SETS["inversion"], st.PAPER_SETS["fullbody"]  # 10 and 20


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = build_study_dir(tmp_path_factory.mktemp("served"), SETS, PAIRS)
    server = Server(folder, simulated=True)
    yield server, folder
    assert server.stop() == 0, "".join(server.lines)
    assert "stopped" in "".join(server.lines)


def _choose(seed):
    return lambda i, n: (seed * 5 + i * 3) % n


@pytest.mark.slow
def test_24_participants_at_once_lose_nothing_and_interleave_nothing(served, capsys):
    server, folder = served
    barrier = threading.Barrier(PARTICIPANTS)
    latencies, results, errors = [], {}, []

    def one(i):
        pid = f"load-{i:02d}"
        try:
            # all consent at once (barrier), then each answers as fast as the server lets it
            results[pid, "inversion"] = participate(server.url, "inversion", pid, _choose(i),
                                                    latencies, barrier)
            results[pid, "fullbody"] = participate(server.url, "fullbody", pid, _choose(i + 1),
                                                   latencies)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(f"{pid}: {err!r}")

    start = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(PARTICIPANTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    wall = time.perf_counter() - start
    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in threads), "a participant hung"
    assert len(latencies) == PARTICIPANTS * (SETS + PAIRS)
    q = statistics.quantiles(latencies, n=100)
    with capsys.disabled():
        print(f"\nstudy server load: {PARTICIPANTS} participants x ({SETS} sets + {PAIRS} "
              f"pairs) = {len(latencies)} answers in {wall:.1f} s; answer POST latency "
              f"p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms")
    assert q[94] < 5.0  # generous: 2 shared cores

    studies = study_files.served_studies(folder)
    for kind, n in (("inversion", SETS), ("fullbody", PAIRS)):
        path = study_responses.responses_path(folder, kind, simulated=True)
        text = path.read_text()
        assert text.endswith("\n")
        lines = text.splitlines()
        assert len(lines) == 1 + PARTICIPANTS * n  # header + exactly one line per answer
        columns = st.COLUMNS_OF[kind]
        rows = list(csv.DictReader(io.StringIO(text)))
        assert all(len(r) == len(columns) and None not in r.values() for r in rows)
        responses = study_responses.read_responses(path)
        assert responses.duplicates == 0 and responses.partial_lines == 0
        assert responses.simulated and {r["simulated"] for r in rows} == {"true"}
        key = st.KEY_OF[kind]
        assert len({(r["participant"], r[key]) for r in rows}) == PARTICIPANTS * n
        # each row is what that participant was shown and clicked: images identified by their
        # bytes (fetched from the server), not by the server's own ids
        method = method_of_file(studies[kind])
        shown_as = {}
        by_row = {(r["participant"], r[key]): r for r in rows}
        for (pid, k), answered in results.items():
            if k != kind:
                continue
            for a in answered:
                for image_id in a["images"]:
                    if image_id not in shown_as:
                        shown_as[image_id] = method[fetch_image(server.url, kind, image_id)]
                methods = [shown_as[i] for i in a["images"]]
                row = by_row[pid, a["trial"]]
                if kind == "inversion":
                    assert row["shown"].split("|") == methods
                    assert row["choice"] == methods[a["position"]]
                    assert row["chosen_position"] == str(a["position"] + 1)
                else:
                    assert row["ours_side"] == ("left" if methods[0] == "ours" else "right")
                    assert row["choice"] == st.SIDES[a["position"]]
    # simulated answers never reach the real responses files
    assert not (folder / "responses_inversion.csv").exists()
    assert not (folder / "responses_fullbody.csv").exists()


def test_one_participant_cannot_answer_for_or_read_another(served):
    server, folder = served
    path = study_responses.responses_path(folder, "inversion", simulated=True)
    bob = Client(server.url)
    consent = bob.page("inversion/?pid=iso-bob")
    assert bob.post("inversion/start", {"_page": consent, "pid": "iso-bob",
                                        "consent": "yes"})[0] == 303
    page = bob.page("inversion/?pid=iso-bob")
    first = screen(page)
    assert bob.post("inversion/answer", {"_page": page, "pid": "iso-bob",
                                         "trial": first["trial"], "position": "0"})[0] == 303
    before = path.read_bytes()

    eve = Client(server.url)
    seen = eve.page("inversion/?pid=iso-bob")  # bob's link: eve gets the consent screen only
    assert 'id="consent"' in seen and screen(seen) is None and "iso-bob" in seen
    status, body = eve.post("inversion/start", {"_page": seen, "pid": "iso-bob",
                                                "consent": "yes"})
    assert status == 403 and "already started" in body
    eve_own = eve.page("inversion/?pid=iso-eve")
    eve.post("inversion/start", {"_page": eve_own, "pid": "iso-eve", "consent": "yes"})
    eve_page = eve.page("inversion/?pid=iso-eve")
    current = screen(bob.page("inversion/?pid=iso-bob"))
    status, body = eve.post("inversion/answer", {"_page": eve_page, "pid": "iso-bob",
                                                 "trial": current["trial"], "position": "1"})
    assert status == 403 and "not accepted" in body
    status, _, _ = eve.request("GET", "inversion/?pid=iso-bob&key=0123456789abcdef0123")
    assert status == 403  # a guessed resume key
    for where in ("responses_inversion.csv", "simulated/responses_inversion.csv",
                  "inversion/responses", "inversion/responses_inversion.csv", "status"):
        assert eve.request("GET", where)[0] == 404
    assert path.read_bytes() == before  # eve changed nothing of bob's

    # bob's own resume link (shown on his page) works on another device of bob's
    resume = __import__("re").search(r'href="\./\?pid=iso-bob&amp;key=([0-9a-f]+)"', page)
    other = Client(server.url)
    status, _, _ = other.request("GET", f"inversion/?pid=iso-bob&key={resume.group(1)}")
    assert status == 303
    assert screen(other.page("inversion/?pid=iso-bob"))["done"] == 1
    for c in (bob, eve, other):
        c.close()


def test_files_outside_the_study_are_refused(served):
    server, folder = served
    client = Client(server.url)
    secret = (folder / study_server.SECRET_FILE).read_bytes()
    outside = ["../study/study_inversion.json", "inversion/image/../../study_inversion.json",
               "inversion/image/..%2f..%2fstudy_inversion.json", "inversion/image/%2e%2e",
               "inversion/image/" + "0" * 24, "inversion/image/" + "0" * 23,
               ".study_secret", "study_inversion.json", "simulated/images/", "etc/passwd",
               "inversion/../../../../etc/passwd", "static/../../etc/passwd",
               "files/study_inversion.json", "tree/", "api/contents", "lab", "notebooks/",
               "fullbody/image/" + fetch_ids(client, "inversion")[0]]  # another study's image
    for where in outside:
        status, _, data = client.request("GET", where)
        assert status in (400, 404), (where, status)
        assert secret not in data and b"ours|" not in data and b'"trials"' not in data
    client.close()


def fetch_ids(client, kind):
    page = client.page(f"{kind}/?pid=ids-{kind}")
    client.post(f"{kind}/start", {"_page": page, "pid": f"ids-{kind}", "consent": "yes"})
    return screen(client.page(f"{kind}/?pid=ids-{kind}"))["images"]


@pytest.mark.parametrize("pid", ["../x", "..%2Fx", "a/b", "%2e%2e", "x" * 65, "a%00b", "<b>"])
def test_participant_ids_that_could_name_a_file_are_refused(served, pid):
    server, folder = served
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    client = Client(server.url)
    status, _, data = client.request("GET", f"inversion/?pid={pid}")
    assert status == 400 and b"participant id" in data and b"<b>" not in data
    consent = client.page("inversion/")
    status, _ = client.post("inversion/start", {"_page": consent, "pid": pid.replace("%2F", "/"),
                                                "consent": "yes"})
    assert status == 400
    client.close()
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_there_is_no_kernel_or_terminal_channel_to_execute_code(served, tmp_path):
    server, folder = served
    client = Client(server.url)
    marker = tmp_path / "executed"
    code = f"open({str(marker)!r}, 'w').write('x')"
    ws = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    for where in ("api/kernels", "api/sessions", "api/terminals", "terminals/websocket/1",
                  "api/kernels/1/channels", "voila/api/kernels", "inversion/api/kernels"):
        assert client.request("GET", where)[0] == 404, where
        assert client.request("GET", where + "/channels", headers=ws)[0] != 101, where
        status, _, _ = client.request("POST", where, {"code": code})
        assert status in (403, 404), (where, status)
    # a Jupyter execute_request, sent as a form and as JSON to the study's own URLs
    for where in ("inversion/answer", "inversion/start", "inversion/"):
        client.request("POST", where, {"msg_type": "execute_request", "code": code})
    pages = [client.page("inversion/"), client.page("fullbody/"), client.page("")]
    assert all("<script" not in p for p in pages)  # nothing runs in the page either
    _, headers, _ = client.request("GET", "inversion/")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "script-src" not in headers["Content-Security-Policy"]
    client.close()
    assert not marker.exists()


def test_a_second_server_on_the_same_folder_is_refused(served):
    _, folder = served
    with pytest.raises(st.StudyError, match="another `drfhq study serve`"):
        study_server.StudyServer(folder, simulated=True).lock()


def test_real_serving_refuses_stand_ins_and_simulated_files(tmp_path):
    demo = tmp_path / "demo"
    assert cli.main(["study", "build", str(demo), "--placeholders"]) == 0
    with pytest.raises(st.StudyError, match="stand-in images, served only with --simulated"):
        study_server.StudyServer(demo)
    folder = build_study_dir(tmp_path / "real", 2, 2)
    path = study_responses.responses_path(folder, "fullbody")
    study_responses.simulate_responses(study_files.load_study(folder / "study_fullbody.json"),
                                       path, 1, 0.5)
    with pytest.raises(st.StudyError, match="simulated"):
        study_server.StudyServer(folder)


def test_status_shows_participants_and_counts(served, capsys, tmp_path):
    server, folder = served
    participate(server.url, "inversion", "stat-01", lambda i, n: 0)
    assert cli.main(["study", "status", str(folder), "--simulated"]) == 0
    out = capsys.readouterr().out
    assert st.SIMULATED_WARNING in out and "Fig. 6 (inversion): 10 sets" in out
    assert "stat-01" in out and "share of choices" in out
    assert cli.main(["study", "status", str(folder)]) == 0  # real ones: none, and not mixed
    out = capsys.readouterr().out
    assert "no responses yet" in out and "stat-01" not in out
    assert st.SIMULATED_WARNING not in out
    # a hand-made real file: counts by hand
    real = build_study_dir(tmp_path, 2, 2)
    study = study_files.load_study(real / "study_fullbody.json")
    for i, trial in enumerate(study.trials):
        row = st.response_row("ann", "fullbody", trial, "left", "left" if i == 0 else "right")
        study_responses.append_response(real / "responses_fullbody.csv", row)
    assert cli.main(["study", "status", str(real)]) == 0
    out = capsys.readouterr().out
    assert "ours chosen in 1 of 2 pairs" in out and "ann" in out
    assert cli.main(["study", "status", str(tmp_path / "nothing")]) == 2
    assert "no frozen study" in capsys.readouterr().err
