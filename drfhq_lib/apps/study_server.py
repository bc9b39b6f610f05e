"""The user studies as a web page participants open on their own devices (``drfhq study serve``).

A small `Tornado <https://www.tornadoweb.org>`_ application (the web server Jupyter itself runs
on), not Voilà: Voilà starts one Python kernel per visitor and per reload (about 50 MiB and a
notebook execution each; 24 visitors at once took 18 s to get their pages on 2 cores), and
exposes a kernel channel that must then be locked down. Here every page is plain HTML
rendered by the server, with no script, no kernel, no file browser and no terminal: there is
nothing to execute code through. The study logic is the one of the notebook app
(:mod:`drfhq_lib.eval.study_responses` sessions: seeded order and placement, one answer per
trial, resume).

URLs, all relative so that the pages also work behind a reverse proxy under a prefix:

* ``/`` the list of studies served; ``/<study>/?pid=ID`` a participant's link (``<study>`` is
  ``inversion`` for Fig. 6 or ``fullbody`` for Fig. 15); without ``pid`` an id is generated;
* the consent and instruction screen, then the trials with a progress indicator, then a
  thank-you screen; reloading or reopening the link resumes where the participant stopped;
* ``/<study>/image/<id>`` the study's own images, looked up by an opaque id (never a path, and
  telling nothing of the method).

Safety: a participant id is validated (``study.check_participant``: letters, digits, ``-``,
``_``); the first browser that starts an id gets a cookie holding a key for that id (an HMAC
with a secret kept in the study folder), and answers for an id are taken only with its key, so
that nobody can answer for someone else by editing the link; the thank-you and trial pages show
a resume link with the key for moving to another device. No page ever shows anyone's answers.
Forms carry Tornado's XSRF token; pages are sent with a Content-Security-Policy that forbids
scripts. One server per study folder (a lock file); it is the only writer of its responses
files, which are appended one complete line per answer (``study_responses.append_response``).
Simulated runs (``--simulated``: demos, the load test) write only to ``simulated/``, marked.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import hmac
import html
import mimetypes
import os
import secrets
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from drfhq_lib.eval.study import KINDS, ChoiceStudy, StudyError, check_participant
from drfhq_lib.eval.study_files import served_studies
from drfhq_lib.eval.study_responses import (mark_simulated, read_responses, responses_path,
                                            session_for)

SECRET_FILE = ".study_secret"
LOCK_FILE = ".serve.lock"
CONSENT_FILE = "consent.txt"

DEFAULT_CONSENT = """\
You are invited to take part in a short study on how realistic images of faces look. \
It takes about {minutes} minutes.

You will see {n} screens. On each, choose the image that looks most like a real photograph. \
There are no right or wrong answers; go with your first impression.

We record your participant id, your choices and when you made them; nothing else about you. \
Taking part is voluntary; you may stop at any time by closing the page, and you can come back \
to the same link to continue.

Questions: ask the experimenter."""

INSTRUCTION = {"inversion": "Which of these {n} images looks most like a real photograph? "
                            "Click it.",
               "fullbody": "Which of these two images looks more like a real photograph? "
                           "Click it."}

CSP = ("default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")

STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1400px;padding:1em;color:#222}
h1{font-size:1.2em;margin:.4em 0} .bar{display:flex;gap:1em;align-items:center;flex-wrap:wrap}
progress{width:16em;height:1em} .grid{display:flex;flex-wrap:wrap;gap:12px;margin-top:.6em}
.grid button{border:3px solid #ccc;background:#fff;padding:4px;cursor:pointer;border-radius:6px}
.grid button:hover,.grid button:focus{border-color:#2a6ebb}
.grid img{display:block;background:#fff}
.many{--cols:4;--rows:2} @media (max-aspect-ratio:1/1){.many{--cols:2;--rows:4}}
.many img{height:auto;width:min(calc((100vw - 40px) / var(--cols) - 26px),
  calc((100vh - 150px) / var(--rows) - 26px))}
.two img{object-fit:contain;width:calc(50vw - 50px);height:calc(100vh - 150px);max-width:640px}
.start{font-size:1.1em;padding:.5em 1.4em} .note{color:#666;font-size:.85em;margin-top:2em}
.err{color:#a00;font-weight:bold} .sim{background:#c00;color:#fff;padding:.3em .6em}
"""


def _digest(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()


def _secret(folder: Path) -> bytes:
    """The server's key (created once, readable by its owner only)."""
    path = folder / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = path.read_bytes()
        if len(data) < 32:
            raise StudyError(f"{path}: damaged server key; delete it (participants' resume "
                             "links and cookies then stop working)") from None
        return data
    data = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return data


class StudyServer:
    """What the web page serves: the frozen studies of ``study_dir``, their images by opaque
    id, one session per participant, the keys that bind an id to a browser."""

    def __init__(self, study_dir: str | os.PathLike, simulated: bool = False):
        self.dir, self.simulated = Path(study_dir), simulated
        self.studies = served_studies(self.dir, simulated)
        stand_ins = [k for k, s in self.studies.items() if s.placeholder]
        if stand_ins and not simulated:
            raise StudyError(f"{self.dir}: the {', '.join(stand_ins)} study has stand-in images "
                             "(for demos); serve it with --simulated, or build the real study")
        self.paths = {k: responses_path(self.dir, k, simulated) for k in self.studies}
        for kind, path in self.paths.items():
            if simulated:
                mark_simulated(path, "answers through `drfhq study serve --simulated`")
            elif path.exists() and read_responses(path).simulated:  # malformed: raises here
                raise StudyError(f"{path}: a file of simulated responses where real ones go; "
                                 "move it away, or serve with --simulated")
        self.secret = _secret(self.dir)
        self.images: dict[str, dict[str, Path]] = {}
        self.image_id: dict[str, dict[str, str]] = {}
        for kind, study in self.studies.items():
            files = study.images()
            missing = [p for p in files if not Path(p).is_file()]
            if missing:
                raise StudyError(f"{len(missing)} image(s) of the {kind} study are missing "
                                 f"({', '.join(missing[:3])}); rebuild {self.dir}/study_{kind}"
                                 ".json (`drfhq study build`)")
            ids = {p: _digest(self.secret, "image", kind, str(Path(p).resolve()))[:24]
                   for p in files}
            self.image_id[kind] = ids
            self.images[kind] = {i: Path(p).resolve() for p, i in ids.items()}
        self.sessions: dict[tuple[str, str], object] = {}
        self._answer_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.writer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="study-writer")
        self.claimed: set[tuple[str, str]] = set()
        self._lock_fd: int | None = None

    # -- participants
    def key(self, kind: str, pid: str) -> str:
        return _digest(self.secret, "participant", kind, pid)[:20]

    def valid_key(self, kind: str, pid: str, key: str | None) -> bool:
        return bool(key) and hmac.compare_digest(self.key(kind, pid), key)

    def session(self, kind: str, pid: str):
        if (kind, pid) not in self.sessions:
            self.sessions[kind, pid] = session_for(
                self.studies[kind], self.paths[kind], pid, min_view_s=0,
                simulated=self.simulated, recheck=False)
        return self.sessions[kind, pid]

    def answer_lock(self, kind: str, pid: str) -> asyncio.Lock:
        return self._answer_locks.setdefault((kind, pid), asyncio.Lock())

    def started(self, kind: str, pid: str) -> bool:
        return (kind, pid) in self.claimed or self.session(kind, pid).progress[0] > 0

    def new_pid(self, kind: str) -> str:
        while True:
            pid = f"p-{secrets.token_hex(4)}"
            if not self.started(kind, pid):
                return pid

    # -- one server per folder
    def lock(self) -> None:
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StudyError(f"{self.dir}: another `drfhq study serve` serves this folder; "
                             "stop it first (one server per study folder)") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def consent_text(self, kind: str) -> str:
        path = self.dir / CONSENT_FILE
        n = len(self.session_items(kind))
        text = (path.read_text(encoding="utf-8") if path.is_file() else DEFAULT_CONSENT)
        return text.replace("{minutes}", str(max(2, round(n * 0.25)))).replace("{n}", str(n))

    def session_items(self, kind: str) -> list:
        study = self.studies[kind]
        return list(study.sets) if isinstance(study, ChoiceStudy) else list(study.trials)


# ------------------------------------------------------------------------------- web pages

def _page(title: str, body: str, simulated: bool) -> str:
    banner = ('<p class="sim">SIMULATION: answers are recorded as simulated, not as study '
              'results</p>' if simulated else "")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
            f'<meta name="referrer" content="no-referrer"><style>{STYLE}</style></head>'
            f'<body>{banner}{body}</body></html>')


def make_app(server: StudyServer, debug: bool = False):
    """The Tornado application of ``server``."""
    import tornado.web

    class Base(tornado.web.RequestHandler):
        def set_default_headers(self):
            self.set_header("Content-Security-Policy", CSP)
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Referrer-Policy", "no-referrer")
            self.set_header("Cache-Control", "no-store")
            self.clear_header("Server")

        def page(self, title: str, body: str, status: int = 200) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(_page(title, body, server.simulated))

        def write_error(self, status_code: int, **kwargs) -> None:
            reason = {400: "This request is not valid.", 403: "This is not allowed.",
                      404: "There is no such page.", 405: "This is not allowed."}.get(
                          status_code, "Something went wrong; your last answer may not be "
                          "recorded. Reload the page.")
            error = kwargs.get("exc_info", (None, None))[1]
            if isinstance(error, tornado.web.HTTPError) and error.log_message and \
                    status_code in (400, 403):
                reason = error.log_message
            self.page(f"{status_code}", f"<h1>{status_code}</h1><p>{html.escape(reason)}</p>",
                      status_code)

        def study(self, kind: str):
            if kind not in server.studies:
                raise tornado.web.HTTPError(404)
            return server.studies[kind]

        def participant(self, value: str | None) -> str:
            try:
                return check_participant(value)
            except StudyError as err:
                raise tornado.web.HTTPError(400, str(err)) from None

        def cookie_name(self, kind: str, pid: str) -> str:
            return f"drfhq_{kind}_{pid}"

        def has_key(self, kind: str, pid: str) -> bool:
            return server.valid_key(kind, pid, self.get_cookie(self.cookie_name(kind, pid)))

        def give_key(self, kind: str, pid: str) -> None:
            # no Path: the browser scopes it to this study's folder, also under a proxy prefix
            self.set_cookie(self.cookie_name(kind, pid), server.key(kind, pid), path=None,
                            expires_days=60, httponly=True, samesite="Lax",
                            secure=self.request.protocol == "https")

        def back(self, pid: str) -> None:
            self.redirect(f"./?pid={pid}", status=303)

    class NotFound(Base):
        def prepare(self):
            raise tornado.web.HTTPError(404)

    class Index(Base):
        def get(self):
            items = "".join(
                f'<li><a href="{k}/">{k}/</a>: {len(server.session_items(k))} '
                f'{"sets" if k == "inversion" else "pairs"}</li>' for k in server.studies)
            self.page("Studies", "<h1>Studies</h1><ul>" + items + "</ul><p>Give each "
                      "participant a link <code>&lt;study&gt;/?pid=ID</code>, or the study's "
                      "link alone (an id is then generated).</p>")

    class Slash(Base):
        def get(self, kind):
            self.study(kind)
            query = f"?{self.request.query}" if self.request.query else ""
            self.redirect(f"{kind}/{query}", status=301)

    class Study(Base):
        def get(self, kind):
            self.study(kind)
            pid = self.get_query_argument("pid", None)
            if pid is None:
                return self.consent(kind, None)
            pid = self.participant(pid)
            key = self.get_query_argument("key", None)
            if key is not None:
                if not server.valid_key(kind, pid, key):
                    raise tornado.web.HTTPError(403, "This resume link is not valid.")
                self.give_key(kind, pid)
                server.claimed.add((kind, pid))
                return self.back(pid)
            if not self.has_key(kind, pid):
                return self.consent(kind, pid)
            self.screen(kind, pid)

        def consent(self, kind: str, pid: str | None, error: str = "") -> None:
            text = "".join(f"<p>{html.escape(p)}</p>" for p in
                           server.consent_text(kind).split("\n\n") if p.strip())
            who = (f"<p>Your participant id: <b>{html.escape(pid)}</b></p>"
                   f'<input type="hidden" name="pid" value="{html.escape(pid)}">' if pid else
                   "<p>You will get a participant id when you start.</p>")
            error = f'<p class="err">{html.escape(error)}</p>' if error else ""
            self.page("Consent", f'<h1>Image study</h1>{text}<form method="post" '
                      f'action="start">{self.xsrf_form_html()}{who}{error}<p><label>'
                      '<input type="checkbox" name="consent" value="yes" id="consent"> I have '
                      'read this and agree to take part.</label></p><p><button class="start" '
                      'type="submit" id="start">Start</button></p></form>')

        def screen(self, kind: str, pid: str) -> None:
            session = server.session(kind, pid)
            done, total = session.progress
            resume = (f'<p class="note">Participant {html.escape(pid)}. To continue on another '
                      f'device later, keep this <a href="./?pid={pid}&amp;key='
                      f'{server.key(kind, pid)}" id="resume">resume link</a>.</p>')
            if session.finished:
                return self.page("Thank you", f'<h1 id="thanks">Thank you!</h1><p>All {total} '
                                 'answers are recorded. You can close this page now.</p>'
                                 + resume)
            images = session.current_images()
            buttons = "".join(
                f'<button type="submit" name="position" value="{i}" aria-label="image {i + 1}">'
                f'<img src="image/{server.image_id[kind][p]}" alt="image {i + 1}"></button>'
                for i, p in enumerate(images))
            unit = "Set" if kind == "inversion" else "Pair"
            self.page(f"{unit} {done + 1} of {total}",
                      f'<div class="bar"><b id="progress-text">{unit} {done + 1} of {total}</b>'
                      f'<progress id="progress" value="{done}" max="{total}"></progress></div>'
                      f'<h1>{html.escape(INSTRUCTION[kind].format(n=len(images)))}</h1>'
                      f'<form method="post" action="answer">{self.xsrf_form_html()}'
                      f'<input type="hidden" name="pid" value="{pid}">'
                      f'<input type="hidden" name="trial" value="{html.escape(session.current_key)}">'
                      f'<div class="grid {"many" if len(images) > 2 else "two"}">{buttons}</div>'
                      f'</form>{resume}')

    class Start(Study):
        def get(self, kind):
            raise tornado.web.HTTPError(405)

        def post(self, kind):
            self.study(kind)
            pid = self.get_body_argument("pid", None)
            pid = None if pid is None else self.participant(pid)
            if self.get_body_argument("consent", "") != "yes":
                return self.consent(kind, pid, "Please tick the box to agree before you start.")
            if pid is None:
                pid = server.new_pid(kind)
            elif not self.has_key(kind, pid) and server.started(kind, pid):
                raise tornado.web.HTTPError(
                    403, f"The participant id {pid} has already started in another browser. "
                    "Continue there, use your resume link, or ask the experimenter.")
            server.claimed.add((kind, pid))
            server.session(kind, pid)
            self.give_key(kind, pid)
            self.back(pid)

    class Answer(Base):
        async def post(self, kind):
            self.study(kind)
            pid = self.participant(self.get_body_argument("pid", None))
            if not self.has_key(kind, pid):
                raise tornado.web.HTTPError(403, "Answers for this participant id are not "
                                                 "accepted from this browser.")
            trial = self.get_body_argument("trial")
            try:
                position = int(self.get_body_argument("position"))
            except ValueError:
                raise tornado.web.HTTPError(400, "No such image.") from None
            session = server.session(kind, pid)
            # One answer of a participant at a time (a double click sends two); the write and
            # fsync run in a worker thread so that other participants' pages are not held up.
            async with server.answer_lock(kind, pid):
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        server.writer, session.answer_position, position, trial)
                except ValueError:
                    raise tornado.web.HTTPError(400, "No such image.") from None
            self.back(pid)

    class Image(Base):
        def get(self, kind, image_id):
            self.study(kind)
            path = server.images[kind].get(image_id)
            if path is None:
                raise tornado.web.HTTPError(404)
            self.clear_header("Cache-Control")
            self.set_header("Cache-Control", "private, max-age=3600")
            self.set_header("Content-Type", mimetypes.guess_type(path.name)[0]
                            or "application/octet-stream")
            self.finish(path.read_bytes())

    kinds = "|".join(KINDS)
    return tornado.web.Application(
        [(r"/", Index), (rf"/({kinds})", Slash), (rf"/({kinds})/", Study),
         (rf"/({kinds})/start", Start), (rf"/({kinds})/answer", Answer),
         (rf"/({kinds})/image/([0-9a-f]{{24}})", Image)],
        default_handler_class=NotFound, xsrf_cookies=True, debug=debug,
        cookie_secret=server.secret.hex(), compress_response=False, serve_traceback=False,
        xsrf_cookie_kwargs={"httponly": True, "samesite": "Lax"})


async def _serve(server: StudyServer, host: str, port: int, behind_proxy: bool,
                 ready: Callable[[str], None] | None, stop: asyncio.Event | None) -> None:
    import logging

    import tornado.httpserver
    import tornado.netutil

    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    http = tornado.httpserver.HTTPServer(make_app(server), xheaders=behind_proxy,
                                         max_body_size=64 * 1024, max_buffer_size=1024 * 1024,
                                         idle_connection_timeout=120)
    sockets = tornado.netutil.bind_sockets(port, host, reuse_port=False)
    http.add_sockets(sockets)
    stop = stop or asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{sockets[0].getsockname()[1]}/"
    if ready:
        ready(url)
    try:
        await stop.wait()
    finally:
        http.stop()
        await http.close_all_connections()


def serve(study_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8866,
          simulated: bool = False, behind_proxy: bool = False,
          ready: Callable[[str], None] | None = None) -> StudyServer:
    """Serve the studies of ``study_dir`` until SIGINT or SIGTERM; ``ready(url)`` is called
    once the socket listens (``port=0``: a free port)."""
    server = StudyServer(study_dir, simulated)
    server.lock()
    try:
        asyncio.run(_serve(server, host, port, behind_proxy, ready, None))
    finally:
        server.writer.shutdown(wait=True)
        server.unlock()
    return server
