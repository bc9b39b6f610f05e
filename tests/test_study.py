import csv
import math
from pathlib import Path

import pytest
from PIL import Image

from drfhq_lib.apps import study as st
from drfhq_lib.eval.figures import save_figure


def _png(path: Path, colour) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def _inversion_results(root: Path, names=("a", "b", "c"), methods=("e4e", "psp")) -> Path:
    for i, name in enumerate(names):
        for j, method in enumerate(("ours", *methods)):
            _png(root / method / f"{name}.png", (10 * i, 40 * j, 7))
    return root


class Clock:
    """A clock the test moves: the app ignores clicks sooner than min_view_s after a trial."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_inversion_study_pairs_ours_with_each_method_per_input(tmp_path):
    root = _inversion_results(tmp_path / "res")
    (root / "psp" / "b.png").unlink()
    with pytest.raises(st.StudyError, match="psp/b"):
        st.inversion_study(root)
    study = st.inversion_study(root, strict=False)
    assert [t.trial for t in study.trials] == ["a/e4e", "a/psp", "b/e4e", "c/e4e", "c/psp"]
    assert study.sets() == ["a", "b", "c"]
    first = study.trials[0]
    assert Path(first.path_ours) == root / "ours" / "a.png"
    assert Path(first.path_other) == root / "e4e" / "a.png"
    saved = st.save_study(study, tmp_path / "study.json")
    assert st.load_study(saved) == study
    with pytest.raises(st.StudyError, match="no images of our results"):
        st.inversion_study(tmp_path / "nothing")


def test_fullbody_study_pairs_each_render_with_its_composite(tmp_path):
    for name in ("x_body.jpg", "y_body.png", "z_portrait.png"):
        _png(tmp_path / "in" / name, (1, 2, 3))
    for name in ("x_body.png", "y_body.png", "z_portrait.png", "compare/x_body.png"):
        _png(tmp_path / "out" / name, (4, 5, 6))
    study = st.fullbody_study(tmp_path / "in", tmp_path / "out", pattern="*_body*")
    assert [(t.trial, Path(t.path_ours).parent.name, Path(t.path_other).name)
            for t in study.trials] == [("x_body/original", "out", "x_body.jpg"),
                                       ("y_body/original", "out", "y_body.png")]
    (tmp_path / "out" / "y_body.png").unlink()
    with pytest.raises(st.StudyError, match="y_body.png"):
        st.fullbody_study(tmp_path / "in", tmp_path / "out", pattern="*_body*")


def test_placement_is_balanced_repeatable_and_differs_across_participants(tmp_path):
    study = st.inversion_study(_inversion_results(tmp_path, names="abcde"))
    orders = {p: st.presentation_order(study, p) for p in ("p1", "p2", "p3")}
    for order in orders.values():
        sides = [side for _, side in order]
        assert sides.count("left") == sides.count("right") == 5
        assert sorted(t.trial for t, _ in order) == sorted(t.trial for t in study.trials)
        sets = [t.set for t, _ in order]  # a set's trials come together
        assert all(sets[i] == sets[i + 1] for i in range(0, 10, 2))
    assert st.presentation_order(study, "p1") == orders["p1"]
    assert len({tuple((t.trial, s) for t, s in o) for o in orders.values()}) == 3
    assert [s for _, s in orders["p1"]] != [s for _, s in orders["p2"]] or \
        [s for _, s in orders["p1"]] != [s for _, s in orders["p3"]]


def test_clicking_through_the_app_records_one_row_per_trial(tmp_path):
    study = st.inversion_study(_inversion_results(tmp_path / "res"))
    responses, clock = tmp_path / "responses.csv", Clock()
    app = st.StudyApp(study, responses, clock=clock)
    app.start.click()  # no id yet
    assert app.session is None and "participant id" in app.message.value
    app.participant.value = "  alice "
    app.start.click()
    assert app.start.disabled and app.progress.value == "0 / 6 answered"
    shown = []
    for i in range(6):
        clock.t += 1.0
        trial, ours_side = app.session.current
        left = trial.path_ours if ours_side == "left" else trial.path_other
        assert app.left_image.value == Path(left).read_bytes()
        shown.append((trial.trial, ours_side))
        button = app.left_button if i % 2 else app.right_button
        button.click()
        button.click()  # a double click: the second lands on the next trial, too soon
    assert app.progress.value == "6 / 6 answered" and "Finished" in app.message.value
    assert app.left_button.disabled and app.right_button.disabled
    clock.t += 1.0
    app.left_button.click()  # after the end: nothing more
    rows = _rows(responses)
    assert [(r["trial"], r["ours_side"]) for r in rows] == shown
    assert [r["choice"] for r in rows] == ["right", "left"] * 3
    for r in rows:
        assert r["participant"] == "alice" and r["study"] == "inversion"
        assert r["chose_ours"] == ("true" if r["choice"] == r["ours_side"] else "false")
        assert r["simulated"] == "false" and r["set"] == r["trial"].split("/")[0]
    assert responses.read_text().count("participant,") == 1  # one header


def test_a_reopened_app_continues_with_the_remaining_trials_in_the_same_order(tmp_path):
    study = st.inversion_study(_inversion_results(tmp_path / "res"))
    responses, clock = tmp_path / "r.csv", Clock()
    order = [(t.trial, s) for t, s in st.presentation_order(study, "bob")]
    first = st.StudyApp(study, responses, clock=clock)
    first.participant.value = "bob"
    first.start.click()
    for _ in range(2):
        clock.t += 1.0
        first.left_button.click()
    del first  # the browser tab is closed
    again = st.StudyApp(study, responses, clock=clock)
    again.participant.value = "bob"
    again.start.click()
    assert again.progress.value == "2 / 6 answered"
    assert (again.session.current[0].trial, again.session.current[1]) == order[2]
    while not again.session.finished:
        clock.t += 1.0
        again.right_button.click()
    rows = _rows(responses)
    assert [(r["trial"], r["ours_side"]) for r in rows] == order
    assert [r["choice"] for r in rows] == ["left"] * 2 + ["right"] * 4
    other = st.Session(study, responses, "carol")  # another participant starts from zero
    assert other.progress == (0, 6)


def test_a_second_tab_does_not_answer_a_trial_twice(tmp_path):
    study = st.inversion_study(_inversion_results(tmp_path / "res"))
    responses = tmp_path / "r.csv"
    tab1 = st.Session(study, responses, "dan", min_view_s=0)
    tab2 = st.Session(study, responses, "dan", min_view_s=0)
    assert tab1.answer("left") is not None
    assert tab2.answer("right") is None  # tab 1 answered that trial already
    assert len(_rows(responses)) == 1 and tab2.progress == (1, 6)


def _write(path: Path, rows: list[dict]) -> Path:
    for row in rows:
        st.append_response(path, row)
    return path


def _fullbody_rows(wins: dict[str, int], n: int = 5) -> list[dict]:
    rows = []
    for participant, k in wins.items():
        for i in range(n):
            trial = st.Trial(f"pair{i}/original", f"pair{i}", "original", "o.png", "x.png")
            side = "left" if i % 2 else "right"
            choice = side if i < k else ("right" if side == "left" else "left")
            rows.append(st.response_row(participant, "fullbody", trial, side, choice))
    return rows


def _tail(k: int, n: int, p: float, upper: bool) -> float:
    ks = range(k, n + 1) if upper else range(0, k + 1)
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in ks)


def test_tally_and_binomial_test_on_a_hand_computable_file(tmp_path):
    path = _write(tmp_path / "r.csv", _fullbody_rows({"p1": 5, "p2": 3}))
    t = st.tally(st.read_responses(path), "fullbody")
    assert t["n_participants"] == 2 and t["n_trials"] == 10 and t["n_sets"] == 5
    assert t["histogram"] == {3: 1, 5: 1} and t["simulated"] is False
    pooled = t["pooled"]
    assert (pooled["k"], pooled["n"], pooled["proportion"]) == (8, 10, 0.8)
    # two-sided exact test of 8/10 against 1/2: 2 * P(X >= 8) = 2 * (45 + 10 + 1) / 1024
    assert pooled["p_value"] == pytest.approx(2 * _tail(8, 10, 0.5, upper=True))
    assert pooled["p_value"] == pytest.approx(112 / 1024)
    low, high = pooled["ci95"]  # Clopper-Pearson: each tail has 2.5% at the CI bounds
    assert _tail(8, 10, low, upper=True) == pytest.approx(0.025, abs=1e-6)
    assert _tail(8, 10, high, upper=False) == pytest.approx(0.025, abs=1e-6)
    p2 = t["participants"][1]
    assert (p2["participant"], p2["ours_chosen"], p2["out_of"]) == ("p2", 3, 5)
    assert _tail(3, 5, p2["ci95"][0], upper=True) == pytest.approx(0.025, abs=1e-6)
    sign = t["sign_test"]  # both participants above 1/2: 2 * (1/2)^2
    assert (sign["participants_above_half"], sign["p_value"]) == (2, 0.5)


def test_set_rules_count_sets_of_the_inversion_study(tmp_path):
    rows = []
    for k, name in ((3, "A"), (2, "B")):  # ours wins 3/3 in set A, 2/3 in set B
        for i, method in enumerate(("m1", "m2", "m3")):
            trial = st.Trial(f"{name}/{method}", name, method, "o.png", "x.png")
            rows.append(st.response_row("p1", "inversion", trial, "left",
                                        "left" if i < k else "right"))
    responses = st.read_responses(_write(tmp_path / "r.csv", rows))
    count = {rule: st.tally(responses, "inversion", rule)["participants"][0]
             for rule in st.SET_RULES}
    assert [(count[r]["ours_chosen"], count[r]["out_of"]) for r in ("all", "majority", "trial")] \
        == [(1, 2), (2, 2), (5, 6)]
    assert count["all"]["expected_without_preference"] == pytest.approx(2 / 8)
    assert count["majority"]["expected_without_preference"] == pytest.approx(2 * 4 / 8)
    with pytest.raises(ValueError, match="set_rule"):
        st.tally(responses, "inversion", "best")


def test_reader_ignores_repeats_and_a_torn_last_line_and_names_bad_lines(tmp_path):
    rows = _fullbody_rows({"p1": 2}, n=3)
    flipped = "left" if rows[0]["choice"] == "right" else "right"  # a later change of mind
    repeat = {**rows[0], "choice": flipped, "chose_ours": st._flag(flipped == rows[0]["ours_side"])}
    path = _write(tmp_path / "r.csv", [*rows, repeat])
    with open(path, "a") as f:
        f.write("p1,fullbody,pair9/orig")  # a write cut by a crash
    responses = st.read_responses(path)
    assert len(responses.rows) == 3 and responses.duplicates == 1
    assert responses.partial_lines == 1 and responses.rows[0] == rows[0]
    st.append_response(path, _fullbody_rows({"p2": 1}, n=1)[0])  # the fragment is cut off
    assert [r["participant"] for r in _rows(path)] == ["p1"] * 4 + ["p2"]
    with open(path, "a") as f:
        f.write("p3,fullbody,pair0/original,pair0,original,up,left,false,t,false\n")
    with pytest.raises(st.StudyError, match=r"line 7: bad response \(ours_side='up'"):
        st.read_responses(path)
    with pytest.raises(st.StudyError, match="Collect responses with the app"):
        st.read_responses(tmp_path / "none.csv")


def test_simulated_responses_are_marked_everywhere(tmp_path):
    study = st.placeholder_study("fullbody", tmp_path / "img", n_sets=4)
    assert study.placeholder and all(Path(t.path_ours).is_file() for t in study.trials)
    path = tmp_path / "sim.csv"
    sim = st.simulate_responses(study, path, n_participants=3, p_ours=1.0, seed=1)
    assert sim.simulated and st.simulated_marker(path).is_file()
    assert {r["simulated"] for r in _rows(path)} == {"true"} and len(sim.rows) == 12
    t = st.tally(sim, "fullbody")
    assert t["simulated"] is True and t["histogram"] == {4: 3}
    fig = st.tally_figure([t])
    assert st.SIMULATED_WARNING in [x.get_text() for x in fig.texts]
    save_figure(fig, tmp_path / "f.png")
    with pytest.raises(st.StudyError, match="simulated"):
        st.Session(study, path, "real-person")
    with pytest.raises(st.StudyError, match="simulated"):
        st.append_response(path, sim.rows[0])
    real = _write(tmp_path / "real.csv", _fullbody_rows({"p1": 1}, n=2))
    with pytest.raises(st.StudyError, match="not marked simulated"):
        st.simulate_responses(study, real, 1, 0.5)
    with open(real, "a") as f:
        f.write(",".join(sim.rows[0][c] for c in st.COLUMNS) + "\n")
    with pytest.raises(st.StudyError, match="mixes simulated and real"):
        st.read_responses(real)


def test_figure_of_real_responses_has_the_paper_layout_and_no_stamp(tmp_path):
    path = _write(tmp_path / "r.csv", _fullbody_rows({"p1": 5, "p2": 3, "p3": 3}))
    t = st.tally(st.read_responses(path), "fullbody")
    fig = st.tally_figure([t])
    ax = fig.axes[0]
    bars = {round(b.get_y() + b.get_height() / 2): b.get_width() for b in ax.patches}
    assert bars == {0: 0, 1: 0, 2: 0, 3: 2, 4: 0, 5: 1}  # y: ours chosen, x: participants
    assert "number of participants" in ax.get_xlabel() and "out of 5 pairs" in ax.get_ylabel()
    assert st.SIMULATED_WARNING not in [x.get_text() for x in fig.texts]
