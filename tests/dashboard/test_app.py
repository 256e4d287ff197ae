"""The live page over HTTP: the real ``sweeper dashboard`` process on a real study."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import optuna
import pytest

from sweeper.dashboard.app import MAX_CONNECTIONS

from .factory import SWEEP, add_sweep, make_trial
from .live import dashboard


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def get(url: str, follow: bool = True) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_live_page_serves_figures_and_refreshes_from_postgres(storage_url: str) -> None:
    add_sweep(storage_url, n_trials=40)
    with dashboard("--study", SWEEP, "--storage", storage_url, "--refresh", "1") as live:
        assert live.url.startswith("http://127.0.0.1:")  # loopback by default
        status, headers, _ = get(live.url, follow=False)
        assert status == 302 and headers["Location"] == f"/study/{SWEEP}"
        status, _, page = get(live.url + f"study/{SWEEP}")
        assert status == 200 and b"<script src='/static/plotly.min.js'>" in page
        assert b"http://" not in page and b"https://" not in page  # nothing off-host
        status, headers, js = get(live.url + "static/plotly.min.js")
        assert status == 200 and js.startswith(b"/**\n* plotly.js v")

        status, _, body = get(live.url + f"api/study/{SWEEP}")
        doc = json.loads(body)
        assert status == 200 and doc["n_trials"] == 40
        keys = [p["key"] for p in doc["panels"]]
        assert keys == [
            "landscape",
            "slices",
            "decoupling",
            "comparison",
            "decay",
            "importance",
            "curves",
            "history",
            "timeline",
        ]
        assert all(p["figure"]["data"] for p in doc["panels"])

        # A worker finishes a trial: the next poll shows it.
        study = optuna.load_study(study_name=SWEEP, storage=storage_url)
        study.add_trial(
            make_trial(999, lr=4e-4, wd=1e-3, curve={1: 0.5, 6: 0.99}, worker="gpu-c:7")
        )
        doc = json.loads(get(live.url + f"api/study/{SWEEP}")[2])
        assert doc["n_trials"] == 41
        assert "<td>#40</td>" in doc["summary_html"]  # the new best trial (numbered 40)
        timeline = next(p for p in doc["panels"] if p["key"] == "timeline")["figure"]
        assert "gpu-c:7" in json.dumps(timeline["data"])

        status, _, body = get(live.url + "api/study/nope")
        assert status == 404 and "no study named 'nope'" in json.loads(body)["error"]
        status, _, body = get(live.url + "study/nope")
        assert status == 404 and b"no study named &#x27;nope&#x27;" in body
        assert get(live.url + "elsewhere")[0] == 404


def test_without_a_study_it_lists_the_studies(shared_url: str) -> None:
    with dashboard("--storage", shared_url) as live:
        head, _, names = live.first_lines[0].partition(": ")
        assert head == "2 studies" and set(names.split(", ")) == {"cifar10-adamw", "adam-vs-adamw"}
        status, _, page = get(live.url)
        assert status == 200
        assert b"<a href='/study/cifar10-adamw'>cifar10-adamw</a>" in page
        assert b"<a href='/study/adam-vs-adamw'>adam-vs-adamw</a>" in page


def test_bad_requests_get_4xx_and_no_internals(shared_url: str) -> None:
    """Issue 13 item 11: a name no study may have is 400 before any query; no stack text."""
    with dashboard("--storage", shared_url) as live:
        for path in ("api/study/%00", "api/study/a%0Ab", "study/%00", "api/study/" + "x" * 600):
            status, _, body = get(live.url + path)
            assert status == 400, (path, status, body)
            assert "not a study name" in json.loads(body)["error"]
            assert b"Error" not in body and b"Traceback" not in body
        status, _, body = get(live.url + "api/study/%ff")
        assert status in (400, 404) and b"Traceback" not in body
        request = urllib.request.Request(live.url + "api/study/x", data=b"{}", method="POST")
        try:
            urllib.request.urlopen(request, timeout=60)
            raise AssertionError("POST was served")
        except urllib.error.HTTPError as err:
            assert err.code == 405
        assert get(live.url + "api/study/cifar10-adamw")[0] == 200  # still serving


def test_a_large_study_answers_at_once_and_draws_in_the_background(
    shared_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SYNC_TRIALS a poll does not wait for the views: it answers with what it has
    (``pending``) and a later poll gets every figure; an unchanged study is not rebuilt."""
    from sweeper.dashboard import app
    from sweeper.storage import open_storage
    from sweeper.study import load_study

    monkeypatch.setattr(app, "SYNC_TRIALS", 0)  # every study counts as large
    monkeypatch.setattr(app, "POLL_WAIT_S", 0.0)
    source = app.StudySource(open_storage(shared_url), load_study)
    first = json.loads(source.payload(SWEEP))
    assert first["pending"] is True and first["panels"] == []
    deadline = time.monotonic() + 120
    doc = first
    while doc["pending"] and time.monotonic() < deadline:
        time.sleep(0.2)
        doc = json.loads(source.payload(SWEEP))
    assert doc["pending"] is False and len(doc["panels"]) == 9
    assert doc["n_trials"] > 0 and "summary-counts" in doc["summary_html"]
    again = source.payload(SWEEP)
    assert json.loads(again) == doc and source._cache[SWEEP].building is None


IDLE_SOCKETS = 300  # several times the cap; each half sends half a request and stalls


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("Threads:", 1)[1].split()[0])


def test_idle_connections_cannot_starve_a_visitor(shared_url: str) -> None:
    with dashboard("--storage", shared_url) as live, contextlib.ExitStack() as held:
        address = urllib.parse.urlsplit(live.url)
        before = _threads(live.process.pid)
        idle = []
        for i in range(IDLE_SOCKETS):
            sock = held.enter_context(socket.create_connection((address.hostname, address.port)))
            if i % 2:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            idle.append(sock)
        status, _, page = get(live.url)
        assert status == 200 and b"cifar10-adamw" in page
        # Bounded: at most a thread per admitted connection (the uncapped server held one
        # per socket, for good). Evicted connections' threads end once scheduled: wait for
        # that, with a bound that only a leak would reach.
        bound = before + MAX_CONNECTIONS
        deadline = time.monotonic() + 120
        while (threads := _threads(live.process.pid)) > bound and time.monotonic() < deadline:
            time.sleep(0.1)
        assert threads <= bound, (threads, before)
        # The oldest idle ones were closed to make room: they read end-of-file.
        closed = 0
        for sock in idle:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):  # still open: among the newest
                closed += sock.recv(1) == b""
        assert closed >= IDLE_SOCKETS - MAX_CONNECTIONS, closed


def test_it_serves_on_ipv6_loopback(shared_url: str) -> None:
    with dashboard("--storage", shared_url, "--host", "::1") as live:
        assert live.url.startswith("http://[::1]:")
        status, _, page = get(live.url)
        assert status == 200 and b"cifar10-adamw" in page


def test_a_database_outage_is_logged_with_the_driver_s_reason() -> None:
    """PostgreSQL stops under a live page: the poll answers 500 and the dashboard's terminal
    names the driver's own reason, not Optuna's "invalid data ... exceeding max length"."""
    from pgtools import embedded_postgres

    with embedded_postgres() as server:
        url = server.url()
        add_sweep(url, n_trials=10)
        with dashboard("--study", SWEEP, "--storage", url) as live:
            assert get(live.url + f"api/study/{SWEEP}")[0] == 200
            server.stop()
            status, _, body = get(live.url + f"api/study/{SWEEP}")
            assert status == 500, body
        log = live.process.stderr.read() if live.process.stderr else ""
    lines = [line for line in log.splitlines() if line.startswith("sweeper dashboard: ")]
    assert lines, log
    assert all("OperationalError: " in line for line in lines), log
    assert "exceeding max length" not in log and "sqlalche.me" not in log, log
