"""What one API instance serves: its :class:`Settings`, and the baseline in a :class:`BaselineHolder`.

A reload (SIGHUP, :meth:`BaselineHolder.reload`, or a changed ``meta.json`` noticed at most every
``reload_check_seconds``) loads the new directory beside the old one and swaps a single reference:
a request takes the current :class:`Generation` once and finishes on it, so in-flight requests are
never dropped nor mixed. A baseline that fails to load leaves the old one serving. Each generation
caches its lookup answers (LRU of the JSON bytes), its most used fingerprints computed before it
starts serving.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.baseline_dir import BaselineError
from tlsdetect.detect.knowledge import Knowledge
from tlsdetect.detect.lookup import FingerprintShapeError, describe
from tlsdetect.serve.metrics import Metrics
from tlsdetect.serve.responses import clean, dumps

if TYPE_CHECKING:
    from tlsdetect.detect.pin_signals import Policies

__all__ = ["BaselineHolder", "Generation", "Settings", "load_policies"]

log = logging.getLogger("tlsdetect.serve.app")  # the name the server has always logged under


@dataclass(frozen=True)
class Settings:
    """What one API instance serves and its limits."""

    baseline_dir: Path
    token: str | None = None
    max_body_bytes: int = 1 << 20
    max_batch: int = 10_000
    reload_check_seconds: float = 5.0
    cache_size: int = 65_536
    warm_top: int = 64
    #: seconds a client has to send a request's line and headers, then its body (slow clients: issue 18 #12)
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    #: most bytes of a request's line and headers (431 beyond)
    max_header_bytes: int = 65_536
    #: /healthz answers 503 (not 200) while degraded: the last reload failed and an older baseline serves
    unhealthy_when_degraded: bool = False
    #: pin-set and issuer-policy files (``--pins``, ``--issuer-policy``): read once at start, checked report-only
    pins: tuple[str, ...] = ()
    issuer_policy: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "baseline_dir", Path(self.baseline_dir))
        object.__setattr__(self, "pins", tuple(str(p) for p in self.pins))
        object.__setattr__(self, "issuer_policy", tuple(str(p) for p in self.issuer_policy))
        if self.token is not None and not self.token:
            raise ValueError("the token must not be empty")
        if min(self.max_body_bytes, self.max_batch, self.cache_size, self.max_header_bytes) < 1:
            raise ValueError("max_body_bytes, max_batch, cache_size and max_header_bytes must be positive")
        if self.reload_check_seconds < 0:
            raise ValueError("reload_check_seconds must not be negative")
        if not (self.header_timeout > 0 and self.body_timeout > 0):
            raise ValueError("header_timeout and body_timeout must be positive")

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["baseline_dir"] = str(self.baseline_dir)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        d = json.loads(text)
        return cls(**d)


def load_policies(settings: Settings) -> Policies | None:
    """The pin sets and issuer rules of the settings (None without); a bad file raises ``PolicyError``."""
    if not settings.pins and not settings.issuer_policy:
        return None
    from tlsdetect.detect.pin_signals import Policies
    from tlsdetect.pins.issuer_policy import read_issuer_policy
    from tlsdetect.pins.policy import read_policies

    kw: dict[str, Any] = {}
    if settings.pins:
        kw["pins"] = read_policies(settings.pins)
    if settings.issuer_policy:
        kw["issuers"] = read_issuer_policy(list(settings.issuer_policy))
    return Policies(**kw)


def _signature(directory: Path) -> tuple[int, int, int] | None:
    """What changes when meta.json is rewritten or the directory replaced (None: not readable now)."""
    try:
        st = (directory / "meta.json").stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Generation:
    """One loaded baseline and the lookup answers computed from it."""

    def __init__(self, baseline: Baseline, number: int, signature: tuple[int, int, int] | None,
                 cache_size: int, knowledge: Knowledge, policies: Policies | None = None) -> None:
        self.baseline = baseline
        self.knowledge = knowledge
        self.policies = policies  # the same for every generation: policies are not reloaded with the baseline
        self.number = number
        self.signature = signature
        self.loaded_at = time.time()
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def describe_json(self, key: str) -> bytes:
        """The lookup answer for a lower-case fingerprint, as JSON bytes (not cached here)."""
        info = describe(key, self.baseline, self.knowledge)
        info["baseline_generation"] = self.number
        return dumps(clean(info))

    def warm(self, top: int) -> None:
        """Cache the answers for the baseline's ``top`` most used fingerprints (before serving them)."""
        fp = self.baseline.fingerprints_
        if not top or not len(fp):
            return
        counts = fp.groupby("value", observed=True)["count"].sum().sort_values(ascending=False, kind="stable")
        for value in counts.index[:top]:
            key = str(value).lower()
            try:
                self.remember(key, self.describe_json(key))
            except FingerprintShapeError:
                continue

    def cached(self, key: str) -> bytes | None:
        with self._lock:
            body = self._cache.get(key)
            if body is not None:
                self._cache.move_to_end(key)
            return body

    def remember(self, key: str, body: bytes) -> None:
        with self._lock:
            self._cache[key] = body
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


class BaselineHolder:
    """The serving baseline; reloads swap it atomically and keep the old one when the new one is broken."""

    def __init__(self, settings: Settings, metrics: Metrics, knowledge: Knowledge) -> None:
        self.settings = settings
        self.metrics = metrics
        self.knowledge = knowledge
        self._reload_lock = threading.Lock()  # one load at a time
        self._state_lock = threading.RLock()
        self._reloading = False
        self._pending = False
        self._next_check = time.monotonic() + settings.reload_check_seconds
        self.last_error: str | None = None
        self.policies = load_policies(settings)
        sig = _signature(settings.baseline_dir)
        self.current = self._generation(Baseline.load(settings.baseline_dir), 1, sig)
        self._publish()

    def _generation(self, baseline: Baseline, number: int, sig: tuple[int, int, int] | None) -> Generation:
        gen = Generation(baseline, number, sig, self.settings.cache_size, self.knowledge, self.policies)
        gen.warm(self.settings.warm_top)
        return gen

    def _publish(self) -> None:
        self.metrics.generation.set(self.current.number)
        self.metrics.loaded_at.set(self.current.loaded_at)

    def reload(self) -> int:
        """Load the baseline directory again and swap it in; returns the new generation number.

        Raises :class:`BaselineError` (the old baseline keeps serving) when the directory does not load.
        """
        with self._reload_lock:
            sig = _signature(self.settings.baseline_dir)
            try:
                baseline = Baseline.load(self.settings.baseline_dir)
            except BaselineError as exc:
                self.metrics.reloads.labels("error").inc()
                self.last_error = str(exc)
                log.error("baseline reload failed, still serving generation %d: %s", self.current.number, exc)
                raise
            except Exception as exc:  # a damaged file can fail in many ways; never take the server down
                self.metrics.reloads.labels("error").inc()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("baseline reload failed, still serving generation %d", self.current.number)
                raise BaselineError(f"{self.settings.baseline_dir}: {self.last_error}") from None
            # warmed before the swap: requests keep being answered from the old generation meanwhile
            self.current = self._generation(baseline, self.current.number + 1, sig)
            self.last_error = None
            self.metrics.reloads.labels("ok").inc()
            self._publish()
            log.warning("baseline reloaded from %s: generation %d", self.settings.baseline_dir, self.current.number)
            return self.current.number

    def request_reload(self) -> None:
        """Reload in the background; safe from a signal handler, never blocks on a load in progress.

        A request made while a reload runs is remembered and runs after it, so the last change wins.
        """
        with self._state_lock:  # re-entrant and held only for these lines: a signal landing here cannot deadlock
            if self._reloading:
                self._pending = True
                return
            self._reloading = True
        threading.Thread(target=self._background_reload, name="baseline-reload", daemon=True).start()

    def _background_reload(self) -> None:
        while True:
            with contextlib.suppress(BaselineError):
                self.reload()
            with self._state_lock:
                if not self._pending:
                    self._reloading = False
                    return
                self._pending = False

    def maybe_reload(self) -> None:
        """Called on every request: at most every ``reload_check_seconds``, reload if meta.json changed."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.settings.reload_check_seconds
        sig = _signature(self.settings.baseline_dir)
        if sig is not None and sig != self.current.signature and not self._reloading:
            self.request_reload()

    @property
    def reloading(self) -> bool:
        return self._reloading
