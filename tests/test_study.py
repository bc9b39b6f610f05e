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


def _fullbody_files(root: Path, names=("a", "b", "c", "d", "e", "f")) -> st.Study:
    for i, name in enumerate(names):
        _png(root / "in" / f"{name}.png", (10 * i, 40, 7))
        _png(root / "out" / f"{name}.png", (10 * i, 80, 7))
    return study_files.fullbody_study(root / "in", root / "out")


class Clock:
    """A clock the test moves: the app ignores clicks sooner than min_view_s after a trial."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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
    study = _fullbody_files(tmp_path, names="abcdefghij")
    orders = {p: st.presentation_order(study, p) for p in ("p1", "p2", "p3")}
    for order in orders.values():
        sides = [side for _, side in order]
        assert sides.count("left") == sides.count("right") == 5
        assert sorted(t.trial for t, _ in order) == sorted(t.trial for t in study.trials)
    assert st.presentation_order(study, "p1") == orders["p1"]
    assert len({tuple((t.trial, s) for t, s in o) for o in orders.values()}) == 3
    assert [s for _, s in orders["p1"]] != [s for _, s in orders["p2"]] or \
        [s for _, s in orders["p1"]] != [s for _, s in orders["p3"]]


def test_fig6_is_never_a_pairwise_study():
    trial = st.Trial("a/e4e", "a", "e4e", "o.png", "x.png")
    with pytest.raises(st.StudyError, match="ChoiceStudy"):
        st.Study("inversion", (trial,))
    with pytest.raises(st.StudyError, match="choice_tally"):
        st.tally(st.Responses(Path("r.csv"), [], False), "inversion")


def test_clicking_through_the_app_records_one_row_per_trial(tmp_path):
    study = _fullbody_files(tmp_path / "res")
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
        assert r["participant"] == "alice" and r["study"] == "fullbody"
        assert r["chose_ours"] == ("true" if r["choice"] == r["ours_side"] else "false")
        assert r["simulated"] == "false" and r["set"] == r["trial"].split("/")[0]
    assert responses.read_text().count("participant,") == 1  # one header


def test_a_reopened_app_continues_with_the_remaining_trials_in_the_same_order(tmp_path):
    study = _fullbody_files(tmp_path / "res")
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
    study = _fullbody_files(tmp_path / "res")
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
    with pytest.raises(st.StudyError, match="drfhq study serve"):
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
    real_row = {**sim.rows[0], "simulated": "false"}
    with pytest.raises(st.StudyError, match="simulated"):
        study_responses.append_response(path, real_row)  # a real answer into the simulated file
    with pytest.raises(st.StudyError, match="marked simulated"):
        study_responses.append_response(tmp_path / "new.csv", sim.rows[0])
    real = _write(tmp_path / "real.csv", _fullbody_rows({"p1": 1}, n=2))
    with pytest.raises(st.StudyError, match="not marked simulated"):
        study_responses.simulate_responses(study, real, 1, 0.5)
    with open(real, "a") as f:
        f.write(",".join(sim.rows[0][c] for c in st.PAIR_COLUMNS) + "\n")
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


def _answer_rows(path: Path, participant, answers: dict, study) -> list[dict]:
    """Rows for ``{set: chosen method}``, each set shown in the participant's order."""
    rows = []
    for shown in st.choice_order(study, participant):
        if shown.set in answers:
            row = st.choice_row(participant, shown, shown.methods.index(answers[shown.set]))
            study_responses.append_response(path, row)
            rows.append(row)
    return rows


def test_fig6_app_records_the_images_shown_in_order_and_the_one_clicked(tmp_path):
    study = study_files.choice_study(_fig6_results(tmp_path / "res", n_sets=3))
    responses, clock = tmp_path / "r.csv", Clock()
    app = study_app.StudyApp(study, responses, clock=clock)
    assert len(app.images) == len(app.buttons) == 7
    app.participant.value = "erin"
    app.start.click()
    clicked, screens = [2, 0, 6], []
    for position in clicked:
        clock.t += 1.0
        screens.append([image.value for image in app.images])  # what the participant saw
        app.buttons[position].click()
    assert "Finished" in app.message.value and all(b.disabled for b in app.buttons)
    rows = _rows(responses)
    assert len(rows) == 3 and {r["set"] for r in rows} == {"in00", "in01", "in02"}
    for row, screen, position in zip(rows, screens, clicked):
        shown = row["shown"].split("|")
        root = tmp_path / "res"
        # the CSV's order is the order on screen: image i is method shown[i]'s file of the set
        assert screen == [(root / m / f"{row['set']}.png").read_bytes() for m in shown]
        assert row["choice"] == shown[position] and row["chosen_position"] == str(position + 1)
        assert row["ours_position"] == str(shown.index("ours") + 1)
        assert row["chose_ours"] == ("true" if shown[position] == "ours" else "false")
        assert sorted(shown) == sorted(("ours", *st.FIG6_METHODS))


def test_fig6_session_resumes_in_the_same_order_and_ignores_stale_answers(tmp_path):
    study = study_files.choice_study(_fig6_results(tmp_path / "res", n_sets=4))
    responses = tmp_path / "r.csv"
    first = study_responses.ChoiceSession(study, responses, "fay", min_view_s=0)
    order = [s.set for s in first.order]
    key = first.current_key
    assert first.answer_position(1, key) is not None
    assert first.answer_position(1, key) is None  # the same form sent twice: ignored
    assert first.answer_position(3) is not None
    again = study_responses.ChoiceSession(study, responses, "fay", min_view_s=0)
    assert again.progress == (2, 4) and again.current_key == order[2]
    assert again.current_images() == [p for _, p in st.choice_order(study, "fay")[2].paths]
    assert study_responses.ChoiceSession(study, responses, "gus").progress == (0, 4)
    assert [r["set"] for r in _rows(responses)] == order[:2]


def test_fig6_tally_of_a_hand_written_file(tmp_path):
    study = study_files.choice_study(_fig6_results(tmp_path / "res", n_sets=4))
    path = tmp_path / "r.csv"
    _answer_rows(path, "p1", {"in00": "ours", "in01": "ours", "in02": "e4e", "in03": "ours"},
                 study)
    _answer_rows(path, "p2", {"in00": "psp", "in01": "ours"}, study)  # stopped after two
    responses = study_responses.read_responses(path)
    assert responses.kind == "inversion" and not responses.simulated
    t = st.study_tally(responses, study)
    by = {p["participant"]: p for p in t["participants"]}
    assert (by["p1"]["ours_chosen"], by["p1"]["out_of"]) == (3, 4)
    assert (by["p2"]["ours_chosen"], by["p2"]["out_of"]) == (1, 2)
    assert t["incomplete_participants"] == ["p2"] and t["histogram"] == {1: 1, 3: 1}
    # 4 of 6 choices are ours, 1 e4e, 1 psp
    assert t["share_of_choices"]["ours"] == pytest.approx(4 / 6)
    assert t["share_of_choices"]["e4e"] == t["share_of_choices"]["psp"] == pytest.approx(1 / 6)
    # P(X >= 3 | n = 4, p = 1/7) by hand; the two-sided exact p of 3/4 is that tail plus the
    # outcomes at most as likely below (none: P(X=0..2) are all more likely than P(X=3))
    tail = sum(math.comb(4, i) * (1 / 7) ** i * (6 / 7) ** (4 - i) for i in (3, 4))
    assert by["p1"]["p_value"] == pytest.approx(tail, rel=1e-9)
    with open(path, "a") as f:  # a row whose chosen image is not the one at chosen_position
        f.write("p3,inversion,in00,ours|e4e|psp|hyperstyle|restyle-psp|restyle-e4e|"
                "latent-optimisation,1,e4e,1,true,t,false\n")
    with pytest.raises(st.StudyError, match="line 8: bad response.*chosen_position"):
        study_responses.read_responses(path)
    fullbody = _fullbody_rows({"p1": 1}, n=1)[0]
    with pytest.raises(st.StudyError, match="header differs"):
        study_responses.append_response(path, fullbody)


def test_fig6_simulated_file_and_frozen_study(tmp_path):
    study = study_files.placeholder_study("inversion", tmp_path / "img", n_sets=3)
    assert isinstance(study, st.ChoiceStudy) and study.placeholder and study.options == 7
    path = tmp_path / "sim.csv"
    sim = study_responses.simulate_responses(study, path, n_participants=4, p_ours=1.0)
    assert sim.simulated and sim.kind == "inversion" and len(sim.rows) == 12
    assert st.study_tally(sim, study)["histogram"] == {3: 4}
    frozen = study_files.save_study(study, tmp_path / "study_inversion.json")
    assert study_files.load_study(frozen) == study
    old = {"kind": "inversion", "trials": [{"trial": "a/e4e", "set": "a", "method": "e4e",
                                            "path_ours": "o.png", "path_other": "x.png"}]}
    (tmp_path / "old.json").write_text(__import__("json").dumps(old))
    with pytest.raises(st.StudyError, match="pairwise Fig. 6 study of an older drfhq"):
        study_files.load_study(tmp_path / "old.json")


@pytest.mark.parametrize("pid", ["../x", "a/b", "", "  ", "x" * 65, "-a", "a b", "a.b", "é"])
def test_participant_ids_that_could_name_a_file_are_refused(pid):
    with pytest.raises(st.StudyError, match="participant id"):
        st.check_participant(pid)


def test_participant_ids_accepted():
    assert st.check_participant(" p-07_a ") == "p-07_a"
    assert st.check_participant("x" * 64) == "x" * 64


def test_notebook_studies_take_the_explicit_methods_and_fall_back_to_stand_ins(tmp_path):
    res = _fig6_results(tmp_path / "res", n_sets=2)
    studies = study_files.notebook_studies(tmp_path / "work", str(res), "ours", "none", "none",
                                           "*", placeholders=True)
    assert isinstance(studies["inversion"], st.ChoiceStudy)
    assert not studies["inversion"].placeholder and studies["fullbody"].placeholder
    assert (tmp_path / "work" / "study_inversion.json").is_file()
    assert (tmp_path / "work" / "simulated" / "study_fullbody.json").is_file()
    (res / "hyperstyle" / "in01.png").unlink()
    with pytest.raises(st.StudyError, match="hyperstyle.*allow_missing"):
        study_files.notebook_studies(tmp_path / "w2", str(res), "ours", "none", "none", "*",
                                     placeholders=False)
    allowed = study_files.notebook_studies(tmp_path / "w3", str(res), "ours", "none", "none",
                                           "*", placeholders=True, allow_missing=True)
    assert "hyperstyle" not in allowed["inversion"].methods
    assert [m for m, _ in allowed["inversion"].missing] == ["hyperstyle"]
