"""What plain Locust needs beyond the request itself: its options, the served model's held-out
requests and the served-accuracy tally.

Kept apart from :mod:`loadtest.locustfile` (which imports Locust and, with it, gevent's
monkey-patching) so every piece here is a plain function or class that tests call directly:

* :data:`OPTIONS` / :func:`add_options` — the Locust command-line options of the locustfile
  (``locust -f loadtest/locustfile.py --help``), each with the environment variable that also
  sets it (the orchestrator's historical ``LOADTEST_*`` variables keep working);
  :func:`settings_from` validates them (a clear error naming the option and the allowed values).
* :func:`resolve_target` — which engine, variant and protocol the server at ``--host`` serves,
  from its own metadata (OIP ``GET /v2/models/<model>`` → ``parameters.variant``; vLLM
  ``GET /v1/models`` → the artifact path it loaded).
* :func:`held_out_requests` — the test split of that variant as recorded in its
  ``<artifacts>/<variant>/model/split.json`` (via :func:`loadtest.run.write_requests_file`, the one
  place that turns a split into request lines).
* :class:`ServedTally` — ok/failed counts and the confusion matrix of the responses, mergeable
  across Locust workers.

The web UI's **Energy** tab (:class:`loadtest.energy_tab.EnergyView`) has a module of its own.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from loadtest.protocols import PROTOCOLS
from study.paths import DEFAULT_ARTIFACTS, Paths, artifacts_root, load_results_root

DEFAULT_MODEL = "bigvul-modernbert"
ENGINES = ("onnxruntime", "pytorch", "triton", "vllm")
PROTOCOL_CHOICES = ("auto", *PROTOCOLS)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Option:
    """One locustfile option: ``--flag`` (``dest``), its env variable, type, default, help."""

    flag: str
    env: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    web_ui: bool = True  # shown in the web UI's start form (editable per test)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("--requests-file", "LOADTEST_REQUESTS", str, "",
           "JSONL of {\"text\": …, \"label\": 0|1} to send (default: the held-out test split of the "
           "served model, from <artifacts>/<variant>/model/split.json)"),
    Option("--protocol", "LOADTEST_PROTOCOL", str, "auto",
           "oip (Open Inference Protocol v2) or vllm (vLLM /classify); auto asks the server",
           choices=PROTOCOL_CHOICES),
    Option("--model", "LOADTEST_MODEL", str, DEFAULT_MODEL, "served model name"),
    Option("--batch", "LOADTEST_BATCH", int, 1, "functions per request (>= 1)"),
    Option("--rps", "LOADTEST_RPS", str, "",
           "open loop: total Poisson arrival rate, req/s, split over the pool (empty: closed loop, "
           "no think time)"),
    Option("--pool", "LOADTEST_POOL", str, "",
           "open loop: users the rate is split over (default: the number of users)"),
    Option("--request-timeout", "LOADTEST_TIMEOUT_S", float, 60.0, "per-request network timeout, s"),
    Option("--seed", "LOADTEST_SEED", int, 0, "seed of the request order and arrival schedule"),
    Option("--variant", "LOADTEST_VARIANT", str, "",
           "variant of the served model when its metadata does not name it (Triton)"),
    Option("--artifacts-dir", "ARTIFACTS", str, "",
           "artifacts root holding <variant>/model/split.json (default: the model directory the "
           "server's metadata names, else artifacts; relative: to the repository)", web_ui=False),
    Option("--data", "LOADTEST_DATA", str, "", "BigVul CSV (default: the one split.json names)",
           web_ui=False),
    Option("--results-dir", "RESULTS_DIR", str, "",
           "results root (default results): records go to <root>/locust/<engine>__<variant>/<run_id>/",
           web_ui=False),
    Option("--records-dir", "LOADTEST_RECORDS_DIR", str, "",
           "write the per-request CSVs here instead (the orchestrator's choice)", web_ui=False),
    Option("--phase", "LOADTEST_PHASE", str, "run", "tag in the per-request file names", web_ui=False),
    Option("--run-id", "LOADTEST_RUN_ID", str, "", "run id (default: UTC time of the test start)",
           web_ui=False),
    Option("--power-csv", "LOADTEST_POWER_CSV", str, "",
           "follow this power sidecar CSV for the Energy tab (make locust passes its own)", web_ui=False),
    Option("--meter", "LOADTEST_METER", str, "auto",
           "without --power-csv: meter of the power sidecar Locust starts itself (auto, estimate, "
           "nvml, rapl, …); off: no energy figures", web_ui=False),
    Option("--server-pid", "LOADTEST_SERVER_PID", str, "",
           "server process on this machine: Locust's own sidecar attributes estimated power to it",
           web_ui=False),
)


def add_options(parser: Any) -> None:
    """Register :data:`OPTIONS` on Locust's parser (its ``add_argument`` takes the web-UI flags,
    which an argument group's does not)."""
    for o in OPTIONS:
        kw: dict[str, Any] = {"type": o.type, "default": o.default, "env_var": o.env,
                              "help": f"{o.help} [env {o.env}]", "include_in_web_ui": o.web_ui}
        if o.choices:
            kw["choices"] = list(o.choices)
        parser.add_argument(o.flag, **kw)


def _num(opts: Any, o: Option, cast: type, minimum: float, *, optional: bool = False) -> Any:
    raw = getattr(opts, o.dest, o.default)
    if optional and (raw is None or str(raw).strip() == ""):
        return None
    try:
        v = cast(raw)
        ok = math.isfinite(v) and v >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        kind = "an integer" if cast is int else "a number"
        empty = " (or empty)" if optional else ""
        raise ValueError(f"{o.flag}={raw!r} is invalid; allowed: {kind} >= {minimum:g}{empty}")
    return v


@dataclass(frozen=True)
class Settings:
    """The validated locustfile options of one test (see :data:`OPTIONS`)."""

    requests_file: str = ""
    protocol: str = "auto"
    model: str = DEFAULT_MODEL
    batch: int = 1
    rps: float | None = None
    pool: int | None = None
    request_timeout: float = 60.0
    seed: int = 0
    variant: str = ""
    artifacts_dir: str = ""  # "" = $ARTIFACTS, else artifacts/ (study.paths)
    data: str = ""
    results_dir: str = ""  # "" = $RESULTS_DIR, else results/
    records_dir: str = ""
    phase: str = "run"
    run_id: str = ""
    power_csv: str = ""
    meter: str = "auto"
    server_pid: int | None = None


def settings_from(opts: Any) -> Settings:
    """:class:`Settings` from Locust's parsed options (or any namespace); ``ValueError`` naming
    the option and its allowed values when one is invalid. Values typed into the web UI's form
    arrive as strings and are validated the same way."""
    by = {o.dest: o for o in OPTIONS}

    def s(dest: str) -> str:
        v = getattr(opts, dest, by[dest].default)
        return "" if v is None else str(v).strip()

    protocol = s("protocol").lower() or "auto"
    if protocol not in PROTOCOL_CHOICES:
        raise ValueError(f"--protocol={protocol!r} is invalid; allowed: {', '.join(PROTOCOL_CHOICES)}")
    phase = s("phase") or "run"
    for dest, value in (("phase", phase), ("run_id", s("run_id")), ("variant", s("variant"))):
        if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}", value):
            raise ValueError(f"{by[dest].flag}={value!r} is invalid; allowed: letters, digits and "
                             "_.+- (at most 100, not starting with punctuation)")
    model = s("model") or DEFAULT_MODEL
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}", model):
        raise ValueError(f"--model={model!r} is invalid; allowed: letters, digits and _.-")
    rps = _num(opts, by["rps"], float, 1e-9, optional=True)
    pool = _num(opts, by["pool"], int, 1, optional=True)
    if pool is not None and rps is None:
        raise ValueError(f"--pool={pool} is only valid with --rps (open loop)")
    return Settings(
        requests_file=s("requests_file"), protocol=protocol, model=model,
        batch=_num(opts, by["batch"], int, 1), rps=rps, pool=pool,
        request_timeout=_num(opts, by["request_timeout"], float, 0.001),
        seed=_num(opts, by["seed"], int, 0), variant=s("variant"),
        artifacts_dir=s("artifacts_dir"), data=s("data"),
        results_dir=s("results_dir"), records_dir=s("records_dir"),
        phase=phase, run_id=s("run_id"), power_csv=s("power_csv"), meter=s("meter") or "auto",
        server_pid=_num(opts, by["server_pid"], int, 1, optional=True),
    )


def utc_run_id(t_unix_s: float | None = None) -> str:
    t = time.time() if t_unix_s is None else t_unix_s
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def paths(settings: Settings) -> Paths:
    """The study's layout under the options' roots (empty: ``$ARTIFACTS`` / ``$RESULTS_DIR``,
    else the defaults). A results root given as its ``load`` folder (the load test's old
    ``--results-dir``) is taken as that folder's parent, as ``python -m loadtest.run`` does."""
    root, _note = load_results_root(settings.results_dir or None)
    return Paths(artifacts_root(settings.artifacts_dir or None), root)


# --------------------------------------------------------------------------- the served model


@dataclass(frozen=True)
class Target:
    """What the server at ``host`` serves, and how the answer was found (``how``)."""

    host: str
    protocol: str
    model: str
    engine: str | None
    variant: str | None
    format: str | None = None
    how: str = ""
    model_dir: str | None = None  # <artifacts>/<variant>/model as the server's metadata locates it


def _get_json(url: str, timeout_s: float) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            body = r.read(1 << 20)
            return r.status, json.loads(body or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def variant_from_path(path: str) -> str | None:
    """``…/<artifacts>/<variant>/<format>`` (an export the server loaded) → ``<variant>``."""
    parts = [p for p in re.split(r"[\\/]+", str(path)) if p]
    formats = {"pytorch", "onnx", "onnx-int8", "onnx-fp16", "tensorrt", "model", "hf"}
    if len(parts) >= 2 and parts[-1] in formats:
        return parts[-2]
    return None


def model_dir_from_path(path: str, variant: str | None) -> str | None:
    """The trained model directory ``<artifacts>/<variant>/model`` above a served artifact path
    (``…/v0/onnx/model.onnx``, ``…/v0/model``), when it exists on this machine."""
    if not path or not variant:
        return None
    p = Path(path)
    for d in (p, *p.parents):
        if d.name == variant and (model := Paths.from_env(artifacts=d.parent).model_dir(variant)).is_dir():
            return str(model)
    return None


def resolve_target(host: str, settings: Settings, timeout_s: float = 10.0) -> Target:
    """Ask the server at ``host`` what it serves (engine, variant, protocol).

    OIP servers: ``GET /v2/models/<model>`` (this study's servers put ``engine``/``variant``/
    ``format`` under ``parameters``; Triton's metadata names neither, so its variant comes from
    ``--variant``) and ``GET /v2`` for the server name. vLLM: ``GET /v1/models`` lists the model
    with the directory it loaded (``root``). ``ValueError`` with what was tried when nothing
    answers as expected.
    """
    host = host.rstrip("/")
    if not re.match(r"^https?://[^/\s]+", host):
        raise ValueError(f"--host={host!r} is invalid; allowed: http(s)://host:port of the server")
    tried: list[str] = []
    if settings.protocol in ("auto", "oip"):
        url = f"{host}/v2/models/{settings.model}"
        status, meta = _get_json(url, timeout_s)
        tried.append(f"GET {url} → {status or 'no answer'}")
        if status == 200 and isinstance(meta, dict):
            params = meta.get("parameters") if isinstance(meta.get("parameters"), dict) else {}
            engine = params.get("engine") or None
            if engine is None:
                _, server = _get_json(f"{host}/v2", timeout_s)
                name = str((server or {}).get("name", "")).lower() if isinstance(server, dict) else ""
                engine = "triton" if "triton" in name else (name or None)
            variant = settings.variant or params.get("variant") or None
            return Target(host, "oip", settings.model, engine, variant, params.get("format") or None,
                          how="server metadata" if params.get("variant") and not settings.variant
                          else ("--variant" if settings.variant else "server metadata (no variant)"),
                          model_dir=model_dir_from_path(str(params.get("model_path") or ""), variant))
    if settings.protocol in ("auto", "vllm"):
        url = f"{host}/v1/models"
        status, listing = _get_json(url, timeout_s)
        tried.append(f"GET {url} → {status or 'no answer'}")
        if status == 200 and isinstance(listing, dict):
            for m in listing.get("data") or []:
                if isinstance(m, dict) and m.get("id") == settings.model:
                    root = str(m.get("root", ""))
                    variant = settings.variant or variant_from_path(root) or None
                    return Target(host, "vllm", settings.model, "vllm", variant, "pytorch",
                                  how="--variant" if settings.variant else "vLLM model root",
                                  model_dir=model_dir_from_path(root, variant))
            names = [m.get("id") for m in listing.get("data") or [] if isinstance(m, dict)]
            raise ValueError(f"{host} serves {names}, not --model={settings.model!r}")
    raise ValueError(f"cannot tell what {host} serves ({'; '.join(tried)}); is the server up, and "
                     f"is --model={settings.model!r} its model name?")


def held_out_requests(settings: Settings, variant: str, out: Path,
                      model_dir: str | None = None) -> dict[str, Any]:
    """Write the held-out test split of ``variant`` to ``out`` (JSONL); returns what was used.

    The split is the one ``<artifacts>/<variant>/model/split.json`` recorded at training (seed,
    fractions, data), so no function the model was trained on is sent. The model directory is
    ``--artifacts-dir``'s when given, else the one the server's metadata points at (when it
    exists here), else the default artifacts root's. ``ValueError`` when it does not exist.
    """
    from loadtest.run import write_requests_file  # pandas + the training package: only here
    from training.data import SPLIT_FILE

    default_root = artifacts_root(settings.artifacts_dir or DEFAULT_ARTIFACTS) == artifacts_root(DEFAULT_ARTIFACTS)
    path = Path(model_dir) if model_dir and default_root else paths(settings).model_dir(variant)
    if not path.is_dir():
        raise ValueError(
            f"{path} does not exist: cannot tell which functions variant {variant!r} was "
            "trained on (set --artifacts-dir, or --requests-file to send a file of your own)")
    n = write_requests_file(out, settings.data or None, None, model_dir=path)
    split = path / SPLIT_FILE
    return {"file": str(out), "n": n, "split": "test", "model_dir": str(path),
            "split_json": str(split) if split.exists() else None}


def load_items(path: str | os.PathLike[str]) -> list[tuple[str, int, str]]:
    """``[(text, label, pair), …]`` from a requests JSONL file (a clear error if unusable);
    ``pair`` is the vulnerable/fix pair id (``""`` when the file has none)."""
    items: list[tuple[str, int]] = []
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        raise ValueError(f"--requests-file={str(path)!r}: {e.strerror or e}") from None
    with fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                label = int(d["label"])
                if label not in (0, 1):
                    raise ValueError(f"label {label} not in {{0, 1}}")
                items.append((str(d["text"]), label, str(d.get("pair") or "")))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{i}: need {{\"text\": str, \"label\": 0|1}} ({e})") from None
    if not items:
        raise ValueError(f"{path}: no requests in the file")
    return items


# --------------------------------------------------------------------------- served accuracy


@dataclass
class ServedTally:
    """Requests and (true, predicted) label pairs seen so far; ``merge`` adds a worker's."""

    ok: int = 0
    failed: int = 0
    pairs: Counter = field(default_factory=Counter)  # {"t,p": n}

    def add(self, ok: bool, true: list[int], pred: list[int]) -> None:
        if not ok:
            self.failed += 1
            return
        self.ok += 1
        for t, p in zip(true, pred, strict=False):
            self.pairs[f"{t},{p}"] += 1

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": self.failed, "pairs": dict(self.pairs)}

    def merge(self, d: dict[str, Any]) -> None:
        self.ok += int(d.get("ok", 0))
        self.failed += int(d.get("failed", 0))
        for k, n in (d.get("pairs") or {}).items():
            self.pairs[str(k)] += int(n)

    def take(self) -> dict[str, Any]:
        """This tally as a dict, then reset (a worker's delta since its last report)."""
        d = self.to_dict()
        self.ok, self.failed, self.pairs = 0, 0, Counter()
        return d

    def scores(self) -> dict[str, Any]:
        """Served accuracy/F1/MCC/… (:func:`study.metrics.classification_metrics`, the function
        that scores training and the load test) and the majority-class baseline accuracy."""
        from study.metrics import classification_metrics

        expanded = [(int(k.split(",")[0]), int(k.split(",")[1]))
                    for k, n in self.pairs.items() for _ in range(n)]
        scores = classification_metrics([t for t, _ in expanded], [p for _, p in expanded])
        pos = sum(n for k, n in self.pairs.items() if k.startswith("1,"))
        total = sum(self.pairs.values())
        scores["majority_baseline_accuracy"] = (max(pos, total - pos) / total) if total else None
        return scores


def main(argv: list[str] | None = None) -> int:
    """``python -m loadtest.live --help``: Locust's full help *with* the locustfile's options.

    ``locust -f loadtest/locustfile.py --help`` cannot list them: Locust 2.47 prints its help
    before it imports the locustfile, so no ``init_command_line_parser`` listener has run yet
    (locust issue #2917). This builds Locust's own parser with them registered.
    """
    from locust import events
    from locust.argument_parser import get_parser

    events.init_command_line_parser.add_listener(lambda parser, **_kw: add_options(parser))
    get_parser().parse_args(["--help"] if argv is None else argv)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:] or ["--help"]))
