"""Reading Prometheus text exposition with the library that owns the format
(``prometheus_client.parser``), for every place that scrapes a server's ``/metrics``."""

from __future__ import annotations

import urllib.error
import urllib.request


def samples(text: str):
    """Every sample of Prometheus text as ``(name, labels, value)``; stops quietly at the first
    line that is not Prometheus exposition (what was read until then is kept)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                yield sample.name, sample.labels, float(sample.value)
    except (ValueError, TypeError, IndexError):
        return


def parse_prometheus_sum(text: str, names: tuple[str, ...], model: str | None = None) -> float | None:
    """Sum of every sample of the counters ``names`` in Prometheus text.

    A name may be given with or without its ``_total`` suffix; ``*_created`` samples are
    timestamps, not counts, and are ignored. With ``model``, a sample labelled with another
    ``model="…"`` is skipped: a Triton ensemble counts every request once per composing model
    (tokenizer, model step, postprocess) as well as once for the ensemble. Samples without a
    ``model`` label always count. ``None`` when no sample was found (or the text is not
    Prometheus exposition).
    """
    wanted = set(names) | {n + "_total" for n in names if not n.endswith("_total")}
    total, found = 0.0, False
    for name, labels, value in samples(text):
        if name not in wanted:
            continue
        if model is not None and labels.get("model", model) != model:
            continue
        total += value
        found = True
    return total if found else None


def scrape_sum(url: str, names: tuple[str, ...], model: str | None = None,
               timeout_s: float = 5.0) -> float | None:
    """GET ``url`` and :func:`parse_prometheus_sum` it; ``None`` when it cannot be read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            if r.status != 200:
                return None
            body = r.read()
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return parse_prometheus_sum(body.decode("utf-8", "replace"), names, model)
