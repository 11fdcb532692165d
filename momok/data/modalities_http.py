"""A polite HTTP client for ``momok fetch-modalities``: User-Agent, rate limit, retries, on-disk cache.

* Every request names the project in its ``User-Agent`` (Wikimedia's policy asks for it; add a contact
  with ``--contact``).
* At most ``rate`` requests per second: before a request the client sleeps until ``1 / rate`` seconds
  have passed since the previous one started.
* HTTP 429 and 5xx answers, timeouts and connection errors are retried up to ``retries`` times after
  ``backoff * 2**attempt`` seconds (or the server's ``Retry-After`` seconds when it says so, at most
  ``MAX_WAIT``); a 404 is "not found" (``None``), any other 4xx an error naming the URL.
* ``get_cached`` keeps each answer under ``cache/<sha256(url)>`` so a rerun (or a resumed run) asks the
  server nothing it has already answered.

The clock and the sleep function are parameters so that tests measure the gaps between requests
without waiting.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from momok import __version__
from momok.errors import MomokError

USER_AGENT = ("momok/{version} (reproduction pipeline of the MoMoK multi-modal KG paper: benchmark modality "
              "fetcher{contact}) Python-urllib/{python}")
"""The User-Agent of every request (the form Wikimedia's policy asks for); ``--contact`` adds an e-mail
or URL where the services' operators can reach you."""

RATE = 2.0
"""Requests per second at most (``--rate``)."""

RETRIES = 5
"""Tries after the first one of a request answered 429/5xx or timed out (``--retries``)."""

TIMEOUT = 60.0
"""Seconds to wait for an answer (``--timeout``)."""

MAX_WAIT = 300.0
"""The longest wait (seconds) between two tries, whatever the backoff or ``Retry-After`` says."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class PoliteClient:
    """GET with a User-Agent, a rate limit and retries; counts the requests it sends.

    rate: requests per second (> 0). retries: tries after the first one. backoff: seconds before the
    first retry (doubled each time). timeout: seconds to wait for an answer. contact: appended to the
    User-Agent. clock / sleep: ``time.monotonic`` / ``time.sleep`` unless a test passes others.
    """

    def __init__(self, *, rate: float = RATE, retries: int = RETRIES, backoff: float = 1.0, timeout: float = TIMEOUT,
                 contact: str | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if not rate > 0:
            raise MomokError(f"--rate must be a positive number of requests per second, got {rate}")
        if retries < 0:
            raise MomokError(f"--retries must be >= 0, got {retries}")
        self.interval = 1.0 / rate
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.user_agent = USER_AGENT.format(version=__version__, contact=f"; contact: {contact}" if contact else "",
                                            python=f"{sys.version_info[0]}.{sys.version_info[1]}")
        self.clock, self.sleep = clock, sleep
        self.requests = 0  # requests sent (retries included)
        self._last: float | None = None

    def _wait_turn(self) -> None:
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            self.sleep(self.interval - (now - self._last))
            now = self.clock()
        self._last = now

    def get(self, url: str) -> bytes | None:
        """The body of ``url``; ``None`` when the server answers 404. ``MomokError`` after the last retry."""
        for attempt in range(self.retries + 1):
            self._wait_turn()
            self.requests += 1
            request = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
            wait = self.backoff * 2 ** attempt
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    return answer.read()
            except urllib.error.HTTPError as err:
                if err.code == 404:
                    return None
                if err.code not in RETRY_STATUSES:
                    raise MomokError(f"{url}: HTTP {err.code} {err.reason}") from None
                problem = f"HTTP {err.code} {err.reason}"
                retry_after = (err.headers or {}).get("Retry-After", "")
                if retry_after.strip().isdigit():
                    wait = float(retry_after)
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
                    http.client.HTTPException) as err:  # HTTPException: e.g. a body cut short
                problem = f"{getattr(err, 'reason', err)}"
            if attempt == self.retries:
                raise MomokError(f"{url}: {problem} (gave up after {self.retries + 1} tries)")
            self.sleep(min(wait, MAX_WAIT))
        raise AssertionError("unreachable")


class NotCached(MomokError):
    """A look-up-only cache (``client=None``) was asked for an answer it does not have."""


class ResponseCache:
    """Answers of metadata requests on disk, one file per URL (``<folder>/<sha256(url)>``).

    A 404 is kept as an empty ``.404`` file so that it is not asked again either. ``refresh=True``
    asks the server again and overwrites what was kept. ``client=None``: look-ups only (``get``
    raises :class:`NotCached` for what is not kept).
    """

    def __init__(self, folder: str | Path, client: PoliteClient | None, *, refresh: bool = False):
        self.folder, self.client, self.refresh = Path(folder), client, refresh

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.folder / key, self.folder / f"{key}.404"

    def has(self, url: str) -> bool:
        return any(path.exists() for path in self._paths(url))

    def get(self, url: str) -> bytes | None:
        body_path, missing_path = self._paths(url)
        if not self.refresh:
            if body_path.exists():
                return body_path.read_bytes()
            if missing_path.exists():
                return None
        if self.client is None:
            raise NotCached(url)
        body = self.client.get(url)
        self.folder.mkdir(parents=True, exist_ok=True)
        if body is None:
            body_path.unlink(missing_ok=True)
            missing_path.touch()
            return None
        missing_path.unlink(missing_ok=True)
        temporary = body_path.with_name(body_path.name + ".part")
        temporary.write_bytes(body)
        os.replace(temporary, body_path)
        return body
