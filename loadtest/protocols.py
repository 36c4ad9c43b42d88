"""Request builders and response checkers of the protocols the load client speaks.

Kept apart from the locustfile (which imports Locust, and with it gevent's monkey-patching) so
they can be unit-tested and reused in any process. Each ``*_labels`` function raises
``ValueError("schema: …")`` for a response that does not match the contract, which the load
client records as that request's error.
"""

from __future__ import annotations

import json
from typing import Any

PROTOCOLS = ("oip", "vllm")

#: the longest a closed-loop user waits on a 503's ``Retry-After``, s
MAX_RETRY_AFTER_S = 10.0


def retry_after_s(value: str | None) -> float:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds, at most
    :data:`MAX_RETRY_AFTER_S`; missing, negative, an HTTP date or junk is 0 (go on at once)."""
    try:
        seconds = float(value or 0)
    except ValueError:
        return 0.0
    return min(seconds, MAX_RETRY_AFTER_S) if seconds > 0 else 0.0  # NaN > 0 is False


def error_reason(resp: Any) -> str:
    """A short, countable reason for a failed response (no addresses or timestamps in it)."""
    err = getattr(resp, "error", None)
    if err is not None and not getattr(resp, "status_code", 0):
        name = type(err).__name__
        if "timeout" in name.lower() or "timeout" in str(err).lower():
            return "timeout"
        return f"connection: {name}"
    return f"http {resp.status_code}"


def oip_request(texts: list[str], model: str) -> tuple[str, bytes]:
    """(path, JSON body) of an Open Inference Protocol v2 infer request for ``texts``."""
    body = {
        "inputs": [
            {"name": "TEXT", "shape": [len(texts), 1], "datatype": "BYTES", "data": texts}
        ]
    }
    return f"/v2/models/{model}/infer", json.dumps(body).encode()


def oip_labels(payload: Any, n: int) -> list[int]:
    """Predicted labels from an OIP v2 infer response; ``ValueError("schema: …")`` if malformed."""
    return oip_prediction(payload, n)[0]


def oip_prediction(payload: Any, n: int) -> tuple[list[int], list[float] | None]:
    """(labels, positive-class scores) of an OIP v2 infer response. The score is
    ``logit₁ − logit₀`` (:func:`study.metrics.logit_score`), ``None`` without a LOGITS output;
    ``ValueError("schema: …")`` if malformed."""
    if not isinstance(payload, dict) or not isinstance(payload.get("outputs"), list):
        raise ValueError("schema: no 'outputs' list")
    outs = {o.get("name"): o for o in payload["outputs"] if isinstance(o, dict)}
    if "LABEL" not in outs:
        raise ValueError("schema: no LABEL output")
    labels = outs["LABEL"].get("data")
    if not isinstance(labels, list) or len(labels) != n:
        raise ValueError(f"schema: LABEL has {len(labels) if isinstance(labels, list) else 0} values, expected {n}")
    if "LOGITS" in outs:
        logits = outs["LOGITS"].get("data")
        if not isinstance(logits, list) or len(logits) != 2 * n:
            raise ValueError("schema: LOGITS is not [batch, 2]")
        try:
            scores = [float(logits[2 * i + 1]) - float(logits[2 * i]) for i in range(n)]
        except (TypeError, ValueError):
            raise ValueError("schema: LOGITS values are not numbers") from None
    else:
        scores = None
    try:
        out = [int(x) for x in labels]
    except (TypeError, ValueError):
        raise ValueError("schema: LABEL values are not integers") from None
    if any(x not in (0, 1) for x in out):
        raise ValueError("schema: LABEL outside {0, 1}")
    return out, scores


def vllm_request(texts: list[str], model: str) -> tuple[str, bytes]:
    """(path, JSON body) of a vLLM ``/classify`` request (serving.engines.vllm's adapter)."""
    from serving.engines.vllm import classify_request  # light: vllm itself is never imported

    path, body = classify_request(texts, model)
    return path, json.dumps(body).encode()


def vllm_labels(payload: Any, n: int) -> list[int]:
    """Predicted labels from a vLLM classify response (argmax of ``probs``, ordered by index)."""
    return vllm_prediction(payload, n)[0]


def vllm_prediction(payload: Any, n: int) -> tuple[list[int], list[float]]:
    """(labels, positive-class scores) of a vLLM classify response; the score is
    ``log p₁ − log p₀``, the same logit difference the OIP engines give."""
    from serving.engines.vllm import parse_classify_response

    try:
        logits, labels = parse_classify_response(payload, n)
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"schema: {e}") from None
    return [int(x) for x in labels], [float(a[1] - a[0]) for a in logits]


PREDICT_FN = {"oip": oip_prediction, "vllm": vllm_prediction}
