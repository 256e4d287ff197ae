"""The live page: a small stdlib HTTP server that redraws the views as workers add trials.

Promises:

- Routes: ``/`` lists the studies (or redirects to ``--study``'s page when one was given);
  ``/study/NAME`` is a study's page; ``/api/study/NAME`` its summary and figures as JSON;
  ``/static/plotly.min.js`` the plotly.js of the installed plotly package. Nothing on the
  page comes from another host: it works with no network.
- The page polls ``/api/study/NAME`` every ``refresh_s`` seconds and redraws in place
  (``Plotly.react``: zoom and hidden traces survive a refresh). Each poll reads the study
  from PostgreSQL; figures are recomputed only when a trial was added, finished or reported
  an epoch since the last poll, so an idle page costs the database two aggregate queries.
  A large study's views are built in the background: a poll never waits more than
  ``POLL_WAIT_S`` for them, and answers with the summary first (``"pending": true``).
- Binds to 127.0.0.1 unless told otherwise (an IPv6 address such as ``::1`` works too):
  the page has no authentication.
- One client cannot starve the others: at most ``MAX_CONNECTIONS`` connections are open at
  once; when a new one arrives at the cap, the oldest connection that has not yet sent a
  whole request (idle, or sending its headers slowly) is closed to make room, and only when
  every open connection is being answered does the newcomer get a 503. Every read and write
  on a connection gives up after ``SOCKET_TIMEOUT_S``.
- Errors reach the page as one line and never contain a storage password: messages pass
  through ``redact`` where a URL may appear. A name no study may have (``sweeper.spec``'s
  rule: a NUL, a newline, too long) is HTTP 400 and touches no database; an unknown study
  404; a method other than GET 405; a failure of ours 500 with no internals (its type and
  message go to the server's stderr, scrubbed).

No web framework: the page is four routes, and the standard library's threading server
serves a handful of users well. Dash would add Flask, a React bundle and a dependency tree
for what ``fetch`` and ``Plotly.react`` already do.
"""

from __future__ import annotations

import contextlib
import html
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import optuna
import plotly
import plotly.io as pio
import sqlalchemy
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage

from sweeper.dashboard.config import DashboardConfig
from sweeper.dashboard.report import PAGE_CSS, PLOTLY_CONFIG, summary_html
from sweeper.errors import SweeperError, UsageError, one_line, root_cause
from sweeper.snapshot import snapshot
from sweeper.spec import study_name_problem
from sweeper.views.panels import build_views, panels
from sweeper.views.summary import summary_info

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


# Studies up to this many trials are answered with fresh views, however long they take to
# build (~2 s at 2,000 trials on a busy 2-core VM): a poll of a small study never shows a
# half-built page. A larger study's poll waits at most POLL_WAIT_S for its views and
# otherwise answers with what it has (a 50,000-trial study takes ~15 s to build).
SYNC_TRIALS = 2000
POLL_WAIT_S = 2.0
# Connections open at once. A browser opens up to 6 per host; 64 serves a room of viewers
# while bounding threads (one each) whatever a client opens. Measured on a 2-core VM: 1,000
# idle sockets opened against the uncapped server made it hold 1,003 threads.
MAX_CONNECTIONS = 64
# A connection silent this long on a read (or stuck on a write) is dropped. A page's
# request arrives within milliseconds of its connection; answers are small (plotly.js, the
# largest, is 4.6 MB: seconds on a slow link, and the limit applies to each send, not the whole).
SOCKET_TIMEOUT_S = 20.0
# Pending connections the kernel queues before accept (socketserver's default is 5: a burst
# of connections would drop a visitor's SYN and make the page hang for seconds).
LISTEN_BACKLOG = 128


@dataclass
class _Cached:
    """A study's last published payload, the state it was computed from, and the build in
    progress, if any."""

    fingerprint: Any = None
    payload: bytes = b""
    building: threading.Thread | None = None
    failure: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class StudySource:
    """Loads studies from one storage and turns them into the page's JSON, with caching.

    Each poll asks PostgreSQL for the study's fingerprint (``_optuna.read.fingerprint``: a few
    ms at 50,000 trials). Only when it changed are the trials read again (``_optuna.read``, one
    consistent pass) and the views rebuilt, in a background thread: the poll waits for the
    new payload up to ``POLL_WAIT_S`` and otherwise answers with the last one (or, before
    the first, with the summary alone, marked ``"pending": true``; the page then polls
    again within a second). Studies of at most ``SYNC_TRIALS`` trials are always answered
    fresh. A first build publishes twice: the summary (trial counts, the verdict) as soon
    as the trials are read, every figure when all are drawn. Views are computed from one
    snapshot, so a page never mixes two states of a study.

    A storage other than ``RDBStorage`` is read through the loaded ``optuna.Study`` (Optuna
    caches finished trials between polls).
    """

    def __init__(
        self,
        storage: optuna.storages.BaseStorage,
        load: Callable[[optuna.storages.BaseStorage, str], optuna.Study],
    ) -> None:
        self._storage = storage
        self._load = load
        self._studies: dict[str, optuna.Study] = {}
        self._cache: dict[str, _Cached] = {}
        self._guard = threading.Lock()

    def names(self) -> list[dict[str, Any]]:
        """One row per study in the storage: name, trial count, direction."""
        return [
            {"study": s.study_name, "trials": s.n_trials, "direction": s.direction.name.lower()}
            for s in optuna.get_all_study_summaries(self._storage, include_best_trial=False)
        ]

    def check(self, name: str) -> None:
        """Raise ``UsageError`` (naming the study) when the storage has no study ``name``."""
        self._study(name)

    def _study(self, name: str) -> optuna.Study:
        with self._guard:
            if name not in self._studies:
                self._studies[name] = self._load(self._storage, name)
                self._cache[name] = _Cached()
            return self._studies[name]

    def _fingerprint(self, study: optuna.Study) -> tuple[Any, int]:
        """(what changes when the views would, the number of trials)."""
        if isinstance(self._storage, RDBStorage):
            from sweeper._optuna.read import fingerprint

            mark = fingerprint(self._storage, study.study_name)
            return mark, sum(row[1] for row in mark[0])
        trials = study.get_trials(deepcopy=False)
        return tuple(
            (t.number, t.state, len(t.intermediate_values), t.datetime_complete) for t in trials
        ), len(trials)

    def payload(self, name: str) -> bytes:
        """The study's summary HTML and figures as JSON bytes (rebuilt only on change)."""
        study = self._study(name)
        cached = self._cache[name]
        mark, n_trials = self._fingerprint(study)
        wait_s = None if n_trials <= SYNC_TRIALS else POLL_WAIT_S
        with cached.lock:
            if cached.failure is not None:
                failure, cached.failure = cached.failure, None
                raise failure
            fresh = mark == cached.fingerprint and cached.payload and cached.building is None
            if fresh:
                return cached.payload
            if cached.building is None:
                cached.building = threading.Thread(
                    target=self._build, args=(study, cached, mark), daemon=True
                )
                cached.building.start()
            building = cached.building
        building.join(wait_s)
        with cached.lock:
            if cached.failure is not None and cached.building is None:
                failure, cached.failure = cached.failure, None
                raise failure
            if cached.payload:
                return cached.payload
        return json.dumps(
            {
                "study": name,
                "n_trials": None,
                "taken_at": time.strftime("%H:%M:%S"),
                "summary_html": "<p>Reading the study…</p>",
                "panels": [],
                "pending": True,
            }
        ).encode()

    def _build(self, study: optuna.Study, cached: _Cached, mark: Any) -> None:
        try:
            storage = self._storage
            snap = snapshot(study, storage if isinstance(storage, RDBStorage) else None)
            summary = summary_info(snap)
            head = {
                "study": snap.name,
                "n_trials": len(snap.trials),
                "taken_at": snap.taken_at.strftime("%H:%M:%S"),
                "summary_html": summary_html(summary),
            }
            with cached.lock:  # a first load shows the counts and the verdict first
                if not cached.payload:
                    cached.payload = _assemble({**head, "pending": True}, [])
            views = build_views(snap, summary=summary)
            # Plotly serialises its own figures (numpy arrays included); the rest is spliced
            # around them rather than decoded and re-encoded.
            parts = [
                f'{{"key":{json.dumps(p.key)},"title":{json.dumps(p.title)},'
                f'"caption":{json.dumps(p.caption)},'
                f'"figure":{pio.to_json(p.figure, validate=False)}}}'
                for p in panels(views)
            ]
            with cached.lock:
                cached.payload = _assemble({**head, "pending": False}, parts)
                cached.fingerprint = mark
        except BaseException as err:  # reported by the next poll, as a poll's own error
            with cached.lock:
                cached.failure = err
        finally:
            with cached.lock:
                cached.building = None


def _assemble(head: dict[str, Any], parts: list[str]) -> bytes:
    text = json.dumps(head)
    return (text[:-1] + ',"panels":[' + ",".join(parts) + "]}").encode()


def _page(title: str, body: str, script: str = "") -> bytes:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        # An empty icon: otherwise every browser asks for /favicon.ico and logs the 404.
        "<link rel='icon' href='data:,'>"
        f"<title>{html.escape(title)}</title><style>{PAGE_CSS}"
        "#status{color:#666} #error{color:#b00020;font-weight:600}</style>"
        f"{script}</head><body>{body}</body></html>"
    ).encode()


def study_list_page(rows: list[dict[str, Any]]) -> bytes:
    """The list of studies, each linking to its page."""
    if rows:
        items = "".join(
            f"<tr><td><a href='/study/{urllib.parse.quote(r['study'], safe='')}'>"
            f"{html.escape(r['study'])}</a></td><td class='num'>{r['trials']}</td>"
            f"<td>{r['direction']}</td></tr>"
            for r in rows
        )
        table = (
            "<table class='summary' id='studies'><tr><th>study</th><th>trials</th>"
            f"<th>direction</th></tr>{items}</table>"
        )
    else:
        table = "<p id='studies'>No studies in this storage yet: start one with sweeper run.</p>"
    return _page("sweeper studies", f"<h1>sweeper studies</h1>{table}")


# The page's script: fetch the JSON, draw each panel, poll again. Panels are created on the
# first response, so a study's set of figures can be whatever the server sends.
_SCRIPT = """
const API = %(api)s, REFRESH_MS = %(refresh_ms)d, CONFIG = %(config)s;
let pending = false;
async function refresh() {
  const status = document.getElementById('status'), error = document.getElementById('error');
  try {
    const response = await fetch(API, {cache: 'no-store'});
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    document.getElementById('summary').innerHTML = body.summary_html;
    pending = body.pending === true;
    const holder = document.getElementById('panels');
    for (const panel of body.panels) {
      let div = document.getElementById('fig-' + panel.key);
      if (!div) {
        const section = document.createElement('section');
        section.id = panel.key;
        const h2 = document.createElement('h2'); h2.textContent = panel.title;
        const p = document.createElement('p'); p.className = 'caption';
        p.textContent = panel.caption;
        div = document.createElement('div'); div.id = 'fig-' + panel.key; div.className = 'figure';
        // The div's height is the figure's: Plotly's responsive mode sizes to its container.
        div.style.height = (panel.figure.layout.height || 450) + 'px';
        section.append(h2, p, div); holder.append(section);
      }
      await Plotly.react(div, panel.figure.data, panel.figure.layout, CONFIG);
    }
    status.textContent = pending
      ? (body.n_trials === null ? 'reading the study…' : body.n_trials + ' trials, read ' +
         body.taken_at + '; drawing the views…')
      : body.n_trials + ' trials, read ' + body.taken_at +
        '; refreshing every ' + (REFRESH_MS / 1000) + ' s';
    error.textContent = '';
  } catch (e) {
    error.textContent = 'Could not refresh: ' + e.message + ' (retrying)';
  }
  // While the views are being drawn (a large study), ask again soon.
  setTimeout(refresh, pending ? Math.min(REFRESH_MS, 1000) : REFRESH_MS);
}
window.addEventListener('load', refresh);
"""


def study_page(name: str, refresh_s: float) -> bytes:
    """A study's page: empty panels that the script fills and keeps fresh."""
    api = "/api/study/" + urllib.parse.quote(name, safe="")
    script = _SCRIPT % {
        "api": json.dumps(api),
        "refresh_ms": int(refresh_s * 1000),
        "config": json.dumps(PLOTLY_CONFIG),
    }
    title = f"sweeper: {name}"
    body = (
        f"<h1>{html.escape(title)}</h1><p class='meta'><a href='/studies'>all studies</a> · "
        "<span id='status'>loading…</span> <span id='error'></span></p>"
        "<div id='summary'></div><div id='panels'></div>"
    )
    head = f"<script src='/static/plotly.min.js'></script><script>{script}</script>"
    return _page(title, body, head)


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    timeout = SOCKET_TIMEOUT_S  # socketserver applies it to the connection's socket

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:  # a whole request arrived: its answer is owed, never evicted from here on
            self.server.answering(self.request)
        return ok

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request would drown the terminal at one poll per 5 s per page.
        return

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, cache: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=86400" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json_error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), "application/json")

    def _not_allowed(self) -> None:
        self._json_error(HTTPStatus.METHOD_NOT_ALLOWED, "only GET is served here")

    # http.server dispatches on these names.
    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815

    def _study_name(self, quoted: str) -> str | None:
        """The study name in a URL, or None after answering 400 when none may have it."""
        name = urllib.parse.unquote(quoted, errors="strict")
        problem = study_name_problem(name)
        if problem:
            self._json_error(HTTPStatus.BAD_REQUEST, f"not a study name: it {problem}")
            return None
        return name

    def do_GET(self) -> None:
        config = self.server.config
        try:
            path = urllib.parse.urlsplit(self.path).path
            if path == "/" and config.study:
                self.send_response(HTTPStatus.FOUND)
                self.send_header("Location", "/study/" + urllib.parse.quote(config.study, safe=""))
                self.end_headers()
            elif path in ("/", "/studies"):
                rows = self.server.source.names()
                self._send(HTTPStatus.OK, study_list_page(rows), "text/html; charset=utf-8")
            elif path == "/static/plotly.min.js":
                self._send(HTTPStatus.OK, self.server.plotly_js, "text/javascript", cache=True)
            elif path.startswith("/study/"):
                name = self._study_name(path[len("/study/") :])
                if name is None:
                    return
                try:
                    self.server.source.check(name)
                except UsageError as err:
                    page = _page(
                        "sweeper: not found", f"<h1>Not found</h1><p>{html.escape(str(err))}</p>"
                    )
                    self._send(HTTPStatus.NOT_FOUND, page, "text/html; charset=utf-8")
                    return
                self._send(
                    HTTPStatus.OK, study_page(name, config.refresh_s), "text/html; charset=utf-8"
                )
            elif path.startswith("/api/study/"):
                name = self._study_name(path[len("/api/study/") :])
                if name is None:
                    return
                self._send(HTTPStatus.OK, self.server.source.payload(name), "application/json")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")
        except UnicodeDecodeError:  # %-escapes that are not UTF-8
            self._json_error(HTTPStatus.BAD_REQUEST, "the path is not valid UTF-8")
        except UsageError as err:
            self._json_error(HTTPStatus.NOT_FOUND, one_line(str(err)))
        except SweeperError as err:
            self._json_error(HTTPStatus.INTERNAL_SERVER_ERROR, one_line(str(err)))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away mid-response
        except Exception as err:  # one bad poll must not take the page down
            # A database error is named by the driver's own reason (an outage reads as
            # Optuna's "invalid data ... exceeding max length" otherwise).
            database = isinstance(err, sqlalchemy.exc.SQLAlchemyError | StorageInternalError)
            message = one_line(root_cause(err) if database else f"{type(err).__name__}: {err}")
            print(f"sweeper dashboard: {self.server.scrub(message)}", file=sys.stderr)
            self._json_error(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "internal error while reading the study (details on the dashboard's terminal)",
            )


class DashboardServer(ThreadingHTTPServer):
    """The HTTP server, holding the study source and the page's configuration."""

    daemon_threads = True  # a poll in flight must not keep a stopping server alive
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        config: DashboardConfig,
        source: StudySource,
        scrub: Callable[[str], str] = lambda s: s,
    ) -> None:
        self.config = config
        self.source = source
        self.scrub = scrub
        self.plotly_js = PLOTLY_JS.read_bytes()
        self._open: set[socket.socket] = set()
        # Open connections without a whole request yet, oldest first (a dict keeps order).
        self._waiting: dict[socket.socket, None] = {}
        self._connections = threading.Lock()
        try:
            # socketserver binds AF_INET unless told: an IPv6 host needs AF_INET6.
            self.address_family = socket.getaddrinfo(
                config.host, config.port, type=socket.SOCK_STREAM
            )[0][0]
            super().__init__((config.host, config.port), _Handler)
        except OSError as err:
            raise SweeperError(
                f"cannot listen on {config.host}:{config.port}: {err.strerror}; "
                "pass --port N (0 picks a free port)"
            ) from None

    def process_request(self, request: Any, client_address: Any) -> None:
        """Admit ``request`` within ``MAX_CONNECTIONS`` (see the module docstring)."""
        with self._connections:
            if len(self._open) >= MAX_CONNECTIONS and self._waiting:
                oldest = next(iter(self._waiting))
                self._forget(oldest)
                # Its handler thread sees end-of-file, answers nothing and closes it.
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RDWR)
            admitted = len(self._open) < MAX_CONNECTIONS
            if admitted:
                self._open.add(request)
                self._waiting[request] = None
        if not admitted:
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(
                    b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Retry-After: 1\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def answering(self, request: Any) -> None:
        """``request`` sent a whole request: no longer a candidate for eviction."""
        with self._connections:
            self._waiting.pop(request, None)

    def _forget(self, request: Any) -> None:
        self._open.discard(request)
        self._waiting.pop(request, None)

    def close_request(self, request: Any) -> None:
        with self._connections:
            self._forget(request)
        super().close_request(request)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


def serve(server: DashboardServer, stop: threading.Event | None = None) -> None:
    """Serve until ``stop`` is set (or forever); closes the socket on the way out."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.daemon = True
    thread.start()
    try:
        while not (stop and stop.is_set()):
            time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
