"""The top level of a multi-repeat ``summary.json``: the mean of every figure over the ok
repeats, a 95 % CI (Student's t) for :data:`CI_METRICS`, and every repeat listed.

Failed repeats are listed and never averaged in; degraded ones are kept and shown but averaged
only when no repeat is ok. A mean over repeats measured differently takes the weakest kind.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from energy.base import combine_kinds
from loadtest.summary import mean_ci95
from study.schema import LOAD_HEADLINE_METRICS, LoadSummary
from study.stats import get_path

# Metrics that get a 95 % CI across repeats (dotted paths into a repeat summary): the headline
# figures (study.schema, the aggregate's too) and the windows' energies.
CI_METRICS = (
    *LOAD_HEADLINE_METRICS,
    "energy.inference.gross_j",
    "energy.inference.net_j",
    "energy.idle.idle_w",
    "energy.system.gross_j",
    "client_cpu.mean_percent",
)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _mean_tree(items: list[Any]) -> Any:
    """Element-wise mean of numeric leaves of same-shaped trees; other leaves from the first.

    Keys ending in ``_unix_s`` and the ``marks`` dict hold instants, not quantities: they are
    taken from the first tree (a mean of Unix times is no time of anything).
    """
    first = items[0]
    if isinstance(first, dict):
        out = {}
        for k, v in first.items():
            if k.endswith("_unix_s") or k == "marks":
                out[k] = v
                continue
            out[k] = _mean_tree([it.get(k) if isinstance(it, dict) else None for it in items])
        return out
    if _is_num(first):
        if all(x == first for x in items):
            return first  # identical settings/counts stay as they are (8 users, not 8.0)
        nums = [x for x in items if _is_num(x)]
        if len(nums) == len(items):
            return sum(nums) / len(nums)
        return None
    return first


def aggregate_repeats(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """The top level of a multi-repeat ``summary.json``: the mean of every numeric field over
    the **ok** repeats, ``ci95`` for :data:`CI_METRICS`, and every repeat (failed ones too) under
    ``repeats``.

    ``status`` is ``"ok"`` when no repeat failed; a ``degraded`` repeat (partial coverage,
    negative net) is left out of the mean when ok repeats exist, and is the mean (status
    ``degraded``) when none does. A failed repeat is never averaged in —
    it is listed under ``repeats`` with its reason, counted in ``n_failed_repeats``, and named in
    the top-level ``failure_reason``. When no repeat is ok the numeric fields are ``None``.
    """
    if not repeats:
        raise ValueError("aggregate_repeats needs at least one repeat summary")
    ok = [r for r in repeats if r.get("status") == "ok"]
    degraded = [r for r in repeats if r.get("status") == "degraded"]
    failed = [(i + 1, r) for i, r in enumerate(repeats) if r.get("status") not in ("ok", "degraded")]
    only_degraded = not ok and bool(degraded)
    if only_degraded:
        ok = degraded  # nothing better to show: their mean, labelled degraded below
    if ok:
        top = _mean_tree(ok)
    else:
        top = _blank_numbers(repeats[0])
    # Error breakdowns differ in keys between repeats: the mean per ok repeat, a reason absent
    # from a repeat counting 0 there (an element-wise mean would give None for it).
    if ok:
        errs: Counter[str] = Counter()
        for r in ok:
            errs.update(get_path(r, "requests.errors") or {})
        top["requests"]["errors"] = {k: v / len(ok) for k, v in sorted(errs.items())}
    # A mean over repeats measured by different meters is labelled by all of them, and takes the
    # weakest kind among them (estimated > replayed > measured: never a mixed mean passed off as
    # measured).
    kinds = sorted({r.get("energy_kind") for r in ok if r.get("energy_kind")})
    sources = sorted({r.get("energy_source") for r in ok if r.get("energy_source")})
    if len(kinds) > 1 or len(sources) > 1:
        top["energy_kind"] = combine_kinds(kinds)
        top["energy_source"] = "+".join(sources)
        top["warnings"] = [*(top.get("warnings") or []),
                           f"repeats were measured differently ({', '.join(sources)}; {', '.join(kinds)})"]
    top.pop("repeat", None)  # a repeat's index; the top level is no repeat (its mean is no index)
    top["ci95"] = {m: mean_ci95([get_path(r, m) for r in ok if _is_num(get_path(r, m))])[1]
                   for m in CI_METRICS}
    top["n_repeats"] = len(repeats)
    top["n_ok_repeats"] = len(ok)
    top["n_failed_repeats"] = len(failed)
    top["n_degraded_repeats"] = len(degraded)
    if degraded and not only_degraded:
        top["warnings"] = [*(top.get("warnings") or []),
                           f"{len(degraded)} degraded repeat(s) left out of the mean (see repeats)"]
    top["flags"] = sorted({f for r in repeats for f in (r.get("flags") or [])})
    if failed:
        top["status"] = "failed"
        top["failure_reason"] = "; ".join(
            f"repeat {k}: {r.get('failure_reason') or 'failed'}" for k, r in failed
        )
    else:
        top["status"] = "degraded" if only_degraded else "ok"
        top["failure_reason"] = None
    top["repeats"] = repeats
    return LoadSummary.from_dict(top).to_dict()


def _blank_numbers(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _blank_numbers(v) for k, v in tree.items()}
    if _is_num(tree):
        return None
    return tree
