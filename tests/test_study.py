import csv
import math
from pathlib import Path

import pytest
from PIL import Image

from drfhq_lib.apps import study as study_app
from drfhq_lib.eval import study as st
from drfhq_lib.eval import study_figures, study_files, study_responses
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
        study_files.inversion_study(root)
    study = study_files.inversion_study(root, strict=False)
    assert [t.trial for t in study.trials] == ["a/e4e", "a/psp", "b/e4e", "c/e4e", "c/psp"]
    assert study.sets() == ["a", "b", "c"]
    first = study.trials[0]
    assert Path(first.path_ours) == root / "ours" / "a.png"
    assert Path(first.path_other) == root / "e4e" / "a.png"
    saved = study_files.save_study(study, tmp_path / "study.json")
    assert study_files.load_study(saved) == study
    with pytest.raises(st.StudyError, match="no images of our results"):
        study_files.inversion_study(tmp_path / "nothing")


def test_fullbody_study_pairs_each_render_with_its_composite(tmp_path):
    for name in ("x_body.jpg", "y_body.png", "z_portrait.png"):
        _png(tmp_path / "in" / name, (1, 2, 3))
    for name in ("x_body.png", "y_body.png", "z_portrait.png", "compare/x_body.png"):
        _png(tmp_path / "out" / name, (4, 5, 6))
    study = study_files.fullbody_study(tmp_path / "in", tmp_path / "out", pattern="*_body*")
    assert [(t.trial, Path(t.path_ours).parent.name, Path(t.path_other).name)
            for t in study.trials] == [("x_body/original", "out", "x_body.jpg"),
                                       ("y_body/original", "out", "y_body.png")]
    (tmp_path / "out" / "y_body.png").unlink()
    with pytest.raises(st.StudyError, match="y_body.png"):
        study_files.fullbody_study(tmp_path / "in", tmp_path / "out", pattern="*_body*")


def test_placement_is_balanced_repeatable_and_differs_across_participants(tmp_path):
    study = study_files.inversion_study(_inversion_results(tmp_path, names="abcde"))
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
    study = study_files.inversion_study(_inversion_results(tmp_path / "res"))
    responses, clock = tmp_path / "responses.csv", Clock()
    app = study_app.StudyApp(study, responses, clock=clock)
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
    study = study_files.inversion_study(_inversion_results(tmp_path / "res"))
    responses, clock = tmp_path / "r.csv", Clock()
    order = [(t.trial, s) for t, s in st.presentation_order(study, "bob")]
    first = study_app.StudyApp(study, responses, clock=clock)
    first.participant.value = "bob"
    first.start.click()
    for _ in range(2):
        clock.t += 1.0
        first.left_button.click()
    del first  # the browser tab is closed
    again = study_app.StudyApp(study, responses, clock=clock)
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
    other = study_responses.Session(study, responses, "carol")  # another participant starts from zero
    assert other.progress == (0, 6)


def test_a_second_tab_does_not_answer_a_trial_twice(tmp_path):
    study = study_files.inversion_study(_inversion_results(tmp_path / "res"))
    responses = tmp_path / "r.csv"
    tab1 = study_responses.Session(study, responses, "dan", min_view_s=0)
    tab2 = study_responses.Session(study, responses, "dan", min_view_s=0)
    assert tab1.answer("left") is not None
    assert tab2.answer("right") is None  # tab 1 answered that trial already
    assert len(_rows(responses)) == 1 and tab2.progress == (1, 6)


def _write(path: Path, rows: list[dict]) -> Path:
    for row in rows:
        study_responses.append_response(path, row)
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
    t = st.tally(study_responses.read_responses(path), "fullbody")
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
    responses = study_responses.read_responses(_write(tmp_path / "r.csv", rows))
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
    responses = study_responses.read_responses(path)
    assert len(responses.rows) == 3 and responses.duplicates == 1
    assert responses.partial_lines == 1 and responses.rows[0] == rows[0]
    study_responses.append_response(path, _fullbody_rows({"p2": 1}, n=1)[0])  # the fragment is cut off
    assert [r["participant"] for r in _rows(path)] == ["p1"] * 4 + ["p2"]
    with open(path, "a") as f:
        f.write("p3,fullbody,pair0/original,pair0,original,up,left,false,t,false\n")
    with pytest.raises(st.StudyError, match=r"line 7: bad response \(ours_side='up'"):
        study_responses.read_responses(path)
    with pytest.raises(st.StudyError, match="Collect responses with the app"):
        study_responses.read_responses(tmp_path / "none.csv")


def test_simulated_responses_are_marked_everywhere(tmp_path):
    study = study_files.placeholder_study("fullbody", tmp_path / "img", n_sets=4)
    assert study.placeholder and all(Path(t.path_ours).is_file() for t in study.trials)
    path = tmp_path / "sim.csv"
    sim = study_responses.simulate_responses(study, path, n_participants=3, p_ours=1.0, seed=1)
    assert sim.simulated and study_responses.simulated_marker(path).is_file()
    assert {r["simulated"] for r in _rows(path)} == {"true"} and len(sim.rows) == 12
    t = st.tally(sim, "fullbody")
    assert t["simulated"] is True and t["histogram"] == {4: 3}
    fig = study_figures.tally_figure([t])
    assert st.SIMULATED_WARNING in [x.get_text() for x in fig.texts]
    save_figure(fig, tmp_path / "f.png")
    with pytest.raises(st.StudyError, match="simulated"):
        study_responses.Session(study, path, "real-person")
    with pytest.raises(st.StudyError, match="simulated"):
        study_responses.append_response(path, sim.rows[0])
    real = _write(tmp_path / "real.csv", _fullbody_rows({"p1": 1}, n=2))
    with pytest.raises(st.StudyError, match="not marked simulated"):
        study_responses.simulate_responses(study, real, 1, 0.5)
    with open(real, "a") as f:
        f.write(",".join(sim.rows[0][c] for c in st.COLUMNS) + "\n")
    with pytest.raises(st.StudyError, match="mixes simulated and real"):
        study_responses.read_responses(real)


def test_figure_of_real_responses_has_the_paper_layout_and_no_stamp(tmp_path):
    path = _write(tmp_path / "r.csv", _fullbody_rows({"p1": 5, "p2": 3, "p3": 3}))
    t = st.tally(study_responses.read_responses(path), "fullbody")
    fig = study_figures.tally_figure([t])
    ax = fig.axes[0]
    bars = {round(b.get_y() + b.get_height() / 2): b.get_width() for b in ax.patches}
    assert bars == {0: 0, 1: 0, 2: 0, 3: 2, 4: 0, 5: 1}  # y: ours chosen, x: participants
    assert "number of participants" in ax.get_xlabel() and "out of 5 pairs" in ax.get_ylabel()
    assert st.SIMULATED_WARNING not in [x.get_text() for x in fig.texts]


# ----------------------------------------------------------------- Fig. 6 as the paper ran it

def _fig6_results(root: Path, n_sets: int = 10, methods=st.FIG6_METHODS) -> Path:
    for i in range(n_sets):
        for j, method in enumerate(("ours", *methods, "aligned")):
            _png(root / method / f"in{i:02d}.png", (j * 20, i * 10, 0))
    return root


def _always_ours(rng, methods, ours):
    return ours


def _uniform(rng, methods, ours):
    return rng.choice(methods)


def test_fig6_sets_show_all_seven_results_in_a_seeded_order_per_participant_and_set(tmp_path):
    study = study_files.choice_study(_fig6_results(tmp_path))
    assert study.options == 7 and study.methods == st.FIG6_METHODS and len(study.sets) == 10
    for s in study.sets:
        assert sorted(s.methods) == sorted(("ours", *st.FIG6_METHODS))  # aligned/ is not one
        assert all(Path(p).parent.name == m for m, p in s.paths)
    alice = st.choice_order(study, "alice")
    assert alice == st.choice_order(study, "alice")  # reopening shows the same order
    bob = st.choice_order(study, "bob")
    assert [s.set for s in alice] != [s.set for s in bob]
    # within one participant the image order differs between sets (seeded per set)
    assert len({s.methods for s in alice}) > 1
    assert {s.set: s.methods for s in alice} != {s.set: s.methods for s in bob}


def test_fig6_always_ours_scores_ten_of_ten(tmp_path):
    study = study_files.choice_study(_fig6_results(tmp_path))
    t = st.choice_tally(study, st.simulate_choices(study, 5, _always_ours), simulated=True)
    assert [p["ours_chosen"] for p in t["participants"]] == [10] * 5
    assert all(p["out_of"] == 10 for p in t["participants"])
    assert t["histogram"] == {10: 5} and t["share_of_choices"]["ours"] == 1.0
    # hand computation: P(10 of 10 | p = 1/7) = 7**-10; the two-sided p is that tail alone
    assert t["participants"][0]["p_value"] == pytest.approx(7.0 ** -10, rel=1e-6)
    assert t["chance"] == pytest.approx(1 / 7)
    # Clopper-Pearson lower bound for 10/10: (alpha/2) ** (1/n)
    assert t["participants"][0]["ci95"][0] == pytest.approx(0.025 ** (1 / 10), rel=1e-6)


def test_fig6_uniform_choices_average_ten_sevenths(tmp_path):
    study = study_files.choice_study(_fig6_results(tmp_path))
    n = 2000
    t = st.choice_tally(study, st.simulate_choices(study, n, _uniform, seed=7))
    mean = sum(p["ours_chosen"] for p in t["participants"]) / n
    sd = math.sqrt(10 * (1 / 7) * (6 / 7)) / math.sqrt(n)  # binomial SD of the mean
    assert abs(mean - 10 / 7) < 4 * sd
    for method, share in t["share_of_choices"].items():
        assert abs(share - 1 / 7) < 4 * math.sqrt((1 / 7) * (6 / 7) / (10 * n)), method
    assert sum(t["share_of_choices"].values()) == pytest.approx(1.0)
    assert t["pooled"]["n"] == 10 * n and "1/7" in t["pooled"]["test"]


def test_fig6_refuses_aligned_and_missing_methods_unless_allowed(tmp_path):
    root = _fig6_results(tmp_path, methods=st.FIG6_METHODS[:-1])  # latent-optimisation not run
    with pytest.raises(st.StudyError, match="aligned"):
        study_files.choice_study(root, methods=("e4e", "aligned"))
    with pytest.raises(st.StudyError, match="latent-optimisation.*allow_missing"):
        study_files.choice_study(root)
    study = study_files.choice_study(root, allow_missing=True)
    assert study.methods == st.FIG6_METHODS[:-1] and study.options == 6
    assert [m for m, _ in study.missing] == ["latent-optimisation"]
    t = st.choice_tally(study, st.simulate_choices(study, 3, _always_ours))
    assert t["missing_methods"][0]["method"] == "latent-optimisation"
    assert t["chance"] == pytest.approx(1 / 6)
    with pytest.raises(st.StudyError, match="not one of the images"):
        st.choice_tally(study, {"p1": {"in00": "latent-optimisation"}})
    fig = study_figures.tally_figure([t])  # the paper's layout: y ours chosen, x participants
    assert "ours chosen (out of 10 sets)" in fig.axes[0].get_ylabel()


def test_pairwise_inversion_study_never_takes_aligned_as_a_method(tmp_path):
    root = _inversion_results(tmp_path / "res")
    _png(root / "aligned" / "a.png", (1, 2, 3))
    study = study_files.inversion_study(root, strict=False)
    assert "aligned" not in {t.method for t in study.trials}
