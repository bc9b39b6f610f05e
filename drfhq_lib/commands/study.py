"""``drfhq study``: build the frozen user studies, serve them as a web page, show progress.

* ``drfhq study build STUDY_DIR ...`` freezes Fig. 6 (one set per input: ours and the listed
  methods) and Fig. 15 (pairs) into ``STUDY_DIR/study_<kind>.json`` (what notebook 15 does on
  first use); ``--placeholders`` builds stand-in studies for a demo (served with --simulated);
* ``drfhq study serve STUDY_DIR`` serves them to participants' browsers
  (:mod:`drfhq_lib.apps.study_server`); answers go to ``STUDY_DIR/responses_<kind>.csv``,
  which notebook 15 tallies;
* ``drfhq study status STUDY_DIR`` lists participants, completed trials and current counts.
"""

from __future__ import annotations

from pathlib import Path

from drfhq_lib.errors import DrfhqError

FIG6_HELP = "Fig. 6 competitors (default: the six of the paper)"


def _build(args) -> int:
    from drfhq_lib.eval import study, study_files

    studies = {}
    if args.placeholders:
        for kind in study.KINDS:
            studies[kind] = study_files.load_or_build_study(
                study_files.study_path(args.study_dir, kind, simulated=True),
                lambda kind=kind: study_files.placeholder_study(
                    kind, Path(args.study_dir) / "simulated" / "images", size=160))
    else:
        if args.inversion_results:
            studies["inversion"] = study_files.choice_study(
                args.inversion_results, args.methods or study.FIG6_METHODS, args.ours,
                args.allow_missing)
        if args.fullbody_inputs and args.fullbody_results:
            studies["fullbody"] = study_files.fullbody_study(
                args.fullbody_inputs, args.fullbody_results, args.fullbody_pattern)
        if not studies:
            raise DrfhqError("nothing to build: give --inversion-results (Fig. 6) and/or "
                             "--fullbody-inputs with --fullbody-results (Fig. 15), or "
                             "--placeholders for a demo")
        for kind, s in studies.items():
            path = study_files.study_path(args.study_dir, kind)
            if path.exists() and not args.force:
                raise DrfhqError(f"{path}: a frozen study exists (participants may have seen "
                                 "it); pass --force to replace it")
            study_files.save_study(s, path)
    for kind, s in studies.items():
        size = (f"{len(s.sets)} sets of {s.options} images" if kind == "inversion"
                else f"{len(s.trials)} pairs")
        missing = f"; MISSING {[m for m, _ in s.missing]}" if getattr(s, "missing", ()) else ""
        print(f"{study.FIGURE_OF[kind]} ({kind}): {size}{missing}"
              + (" [stand-in images]" if s.placeholder else ""))
    return 0


def _serve(args) -> int:
    from drfhq_lib.apps.study_server import serve

    def ready(url: str) -> None:
        print(f"serving {args.study_dir} at {url} (Ctrl-C stops)", flush=True)
        for kind in ("inversion", "fullbody"):
            print(f"  participant link: {url}{kind}/?pid=ID  (or without ?pid=: an id is "
                  "generated)", flush=True)
        if args.host in ("0.0.0.0", "::"):
            print("  listening on every interface: give participants this machine's address "
                  "on the local network", flush=True)

    serve(args.study_dir, args.host, args.port, args.simulated, args.behind_proxy, ready)
    print("stopped", flush=True)
    return 0


def _status(args) -> int:
    from drfhq_lib.eval.study_status import format_status, study_status

    print(format_status(study_status(args.study_dir, args.simulated), args.study_dir), end="")
    return 0


def run(args) -> int:
    return {"build": _build, "serve": _serve, "status": _status}[args.action](args)


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("study", help="build, serve (web page) and follow the user studies",
                              description=__doc__.split("\n\n")[0])
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = actions.add_parser("build", help="freeze the Fig. 6 and Fig. 15 studies into STUDY_DIR")
    b.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    b.add_argument("--inversion-results", type=Path, default=None,
                   help="Fig. 6: folder with one sub-folder per method (notebook 07's work dir)")
    b.add_argument("--methods", nargs="+", default=None, metavar="METHOD", help=FIG6_HELP)
    b.add_argument("--ours", default="ours", help="the folder of our results (default: ours)")
    b.add_argument("--allow-missing", action="store_true",
                   help="leave out a method without results (shown as MISSING) instead of failing")
    b.add_argument("--fullbody-inputs", type=Path, default=None, help="Fig. 15: original renders")
    b.add_argument("--fullbody-results", type=Path, default=None,
                   help="Fig. 15: our composites (`drfhq enhance --out`)")
    b.add_argument("--fullbody-pattern", default="*_body*", help="full-body renders (glob)")
    b.add_argument("--placeholders", action="store_true",
                   help="stand-in images under STUDY_DIR/simulated (demo; serve with --simulated)")
    b.add_argument("--force", action="store_true", help="replace an existing frozen study")
    s = actions.add_parser("serve", help="serve the studies as a web page for participants")
    s.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for other devices "
                        "on the local network)")
    s.add_argument("--port", type=int, default=8866, help="port (default 8866; 0: a free one)")
    s.add_argument("--behind-proxy", action="store_true",
                   help="trust X-Forwarded-* headers of a reverse proxy (HTTPS cookies)")
    s.add_argument("--simulated", action="store_true",
                   help="demo/test: answers are marked simulated and go to STUDY_DIR/simulated/")
    t = actions.add_parser("status", help="participants, completed trials and current counts")
    t.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    t.add_argument("--simulated", action="store_true",
                   help="the simulated responses (STUDY_DIR/simulated/) instead of the real ones")
    p.set_defaults(func=run)
