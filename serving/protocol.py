"""Open Inference Protocol v2 (KServe v2 / Triton HTTP) for the classifier: request parsing,
validation and response building, independent of any web framework.

What the served model accepts and returns (docs/interfaces.md "serving"):

- input ``TEXT``: ``BYTES``, shape ``[batch, 1]`` — raw source code, UTF-8;
- outputs ``LOGITS``: ``FP32`` ``[batch, 2]`` and ``LABEL``: ``INT64`` ``[batch]``.

Both encodings of the protocol are supported, because ``tritonclient.http`` uses the binary one
by default:

- JSON tensors: ``{"inputs": [{"name": "TEXT", "shape": [2, 1], "datatype": "BYTES",
  "data": ["int f() {…}", "…"]}]}`` (``data`` flat or nested, row-major);
- the binary tensor data extension: the header ``Inference-Header-Content-Length: N`` says the
  first ``N`` bytes of the body are the JSON header; each binary input has
  ``"parameters": {"binary_data_size": k}`` and its bytes follow in input order. A ``BYTES``
  element is a 4-byte little-endian length followed by that many bytes. Outputs are returned
  binary when the request asks for it (``"outputs": [{"name": …, "parameters":
  {"binary_data": true}}]`` or ``"parameters": {"binary_data_output": true}``).

Every violation raises :class:`ProtocolError` with an HTTP status and a one-line reason that
names the offending field and what is allowed; the server turns it into ``{"error": reason}``.
"""

from __future__ import annotations

import json
import reprlib
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

INPUT_NAME = "TEXT"
OUTPUT_LOGITS = "LOGITS"
OUTPUT_LABEL = "LABEL"
OUTPUTS = (OUTPUT_LOGITS, OUTPUT_LABEL)
NUM_LABELS = 2
HEADER_LENGTH = "Inference-Header-Content-Length"
# Request-level parameters that change semantics we do not implement: refuse them loudly rather
# than silently ignore them.
MAX_ID_CHARS = 1024
UNSUPPORTED_INPUT_PARAMS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel = 3


def _show(value: Any) -> str:
    """A short repr of a client-supplied value for an error reason (never an echo of a 4 MB
    string or a 1,000-deep list)."""
    return _REPR.repr(value)


class ProtocolError(Exception):
    """A request the protocol (or this model) does not accept; ``status`` is the HTTP code."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass
class InferRequest:
    """One validated inference request."""

    texts: list[str]
    id: str | None = None
    #: output name → return as binary? (only the requested outputs are returned)
    outputs: dict[str, bool] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.texts)


ENCODINGS = ("identity", "gzip", "deflate")


def decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (identity, gzip, deflate), never inflating past ``limit`` bytes.

    A gzip body may hold several members (RFC 1952); a zlib ``deflate`` body one stream. A
    corrupt, truncated or trailing-garbage body is a 400, an inflated size over ``limit`` a 413
    (a small bomb must not inflate past the cap), an unknown encoding a 415.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ENCODINGS:
        raise ProtocolError(
            f"Content-Encoding {_show(encoding)} is not supported; allowed: {', '.join(ENCODINGS)}",
            status=415,
        )
    out: list[bytes] = []
    size, rest = 0, body
    while True:
        d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            chunk = d.decompress(rest, limit + 1 - size)
        except zlib.error as e:
            raise ProtocolError(f"Content-Encoding {encoding}: corrupt body ({e})") from None
        size += len(chunk)
        if size > limit or d.unconsumed_tail:
            raise ProtocolError(
                f"decompressed body exceeds max_body_bytes={limit}", status=413
            )
        out.append(chunk)
        if not d.eof:  # a cut-off stream decompresses to a prefix without any zlib error
            raise ProtocolError(f"Content-Encoding {encoding}: truncated body")
        rest = d.unused_data
        if not rest:
            return b"".join(out)
        if encoding != "gzip":
            raise ProtocolError(
                f"Content-Encoding {encoding}: {len(rest)} bytes after the end of the stream"
            )


def _decode_utf8(raw: bytes, index: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(
            f"input {INPUT_NAME} element {index} is not valid UTF-8 ({e.reason} at byte {e.start}); "
            f"TEXT must be UTF-8 source code"
        ) from None


def deserialize_bytes(raw: bytes, count: int) -> list[str]:
    """Decode ``count`` length-prefixed (4-byte little-endian) UTF-8 strings from ``raw``."""
    out: list[str] = []
    offset, size = 0, len(raw)
    for i in range(count):
        if offset + 4 > size:
            raise ProtocolError(
                f"input {INPUT_NAME}: binary data ends after {i} of {count} elements "
                f"(each element is a 4-byte little-endian length + bytes)"
            )
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > size:
            raise ProtocolError(
                f"input {INPUT_NAME}: element {i} claims {length} bytes but only "
                f"{size - offset} remain in binary_data_size"
            )
        out.append(_decode_utf8(bytes(raw[offset : offset + length]), i))
        offset += length
    if offset != size:
        raise ProtocolError(
            f"input {INPUT_NAME}: {size - offset} trailing bytes after {count} elements; "
            f"binary_data_size must match the elements exactly"
        )
    return out


def serialize_bytes(texts: list[str]) -> bytes:
    """The inverse of :func:`deserialize_bytes` (for clients and tests)."""
    parts = []
    for t in texts:
        b = t.encode("utf-8") if isinstance(t, str) else bytes(t)
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def parse_infer_request(
    body: bytes,
    header_length: str | int | None = None,
    *,
    max_batch_size: int | None = None,
) -> InferRequest:
    """Parse and validate an infer request body (JSON, or JSON + binary tensors).

    ``header_length`` is the ``Inference-Header-Content-Length`` header value, if any.
    ``max_batch_size`` caps the rows of one request (as Triton does); None = no cap.
    """
    if header_length is not None:
        try:
            hlen = int(header_length)
        except (TypeError, ValueError):
            raise ProtocolError(
                f"{HEADER_LENGTH}={_show(header_length)} is not an integer byte count"
            ) from None
        if not 0 < hlen <= len(body):
            raise ProtocolError(
                f"{HEADER_LENGTH}={hlen} is outside the body (1..{len(body)} bytes)"
            )
        header_bytes, binary = body[:hlen], memoryview(body)[hlen:]
    else:
        header_bytes, binary = body, memoryview(b"")

    if not header_bytes.strip():
        raise ProtocolError("empty request body; expected a JSON inference request")
    try:
        # orjson: strict UTF-8, no lone surrogates, no NaN, at most 1,024 levels of nesting
        # (the stdlib parser recursed into RecursionError on deeply nested input).
        req = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as e:
        where = f"{e.msg} at line {e.lineno} column {e.colno}"
        if "UTF-8" in e.msg or "surrogate" in e.msg:
            raise ProtocolError(
                f"request JSON is not valid UTF-8 ({where}); strings, TEXT included, must be UTF-8"
            ) from None
        raise ProtocolError(f"malformed JSON: {where}") from None
    if not isinstance(req, dict):
        raise ProtocolError(f"request must be a JSON object, got {type(req).__name__}")

    unknown = sorted(set(req) - {"id", "parameters", "inputs", "outputs"})
    if unknown:
        raise ProtocolError(
            f"unknown request fields {_show(unknown)}; allowed: id, parameters, inputs, outputs"
        )
    req_id = req.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise ProtocolError(f"'id' must be a string, got {type(req_id).__name__}")
    if req_id is not None and len(req_id) > MAX_ID_CHARS:
        raise ProtocolError(f"'id' has {len(req_id)} characters; allowed: at most {MAX_ID_CHARS}")
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be a JSON object")

    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(f"'inputs' must be a non-empty list holding the {INPUT_NAME} tensor")
    names = [i.get("name") if isinstance(i, dict) else None for i in inputs]
    bad = [n for n in names if n != INPUT_NAME]
    if bad:
        raise ProtocolError(
            f"unknown input tensor {_show(bad[0])}; this model takes only {INPUT_NAME!r}"
        )
    if len(inputs) > 1:
        raise ProtocolError(f"input {INPUT_NAME!r} given {len(inputs)} times; give it once")
    tensor = inputs[0]

    datatype = tensor.get("datatype")
    if datatype != "BYTES":
        raise ProtocolError(f"input {INPUT_NAME} has datatype {_show(datatype)}; expected 'BYTES'")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or len(shape) != 2
        or shape[1] != 1
        or shape[0] < 0
    ):
        raise ProtocolError(f"input {INPUT_NAME} has shape {_show(shape)}; expected [batch, 1]")
    n = shape[0]
    if n == 0:
        raise ProtocolError(f"input {INPUT_NAME} is an empty batch (shape [0, 1]); send >= 1 row")
    if max_batch_size is not None and n > max_batch_size:
        raise ProtocolError(
            f"input {INPUT_NAME} has {n} rows; this server accepts at most "
            f"max_batch_size={max_batch_size} rows per request"
        )

    tparams = tensor.get("parameters") or {}
    if not isinstance(tparams, dict):
        raise ProtocolError(f"input {INPUT_NAME} 'parameters' must be a JSON object")
    for p in UNSUPPORTED_INPUT_PARAMS:
        if p in tparams:
            raise ProtocolError(f"input parameter {p!r} (shared memory) is not supported here")

    if "binary_data_size" in tparams:
        size = tparams["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError(
                f"input {INPUT_NAME} binary_data_size={_show(size)} must be an integer >= 0"
            )
        if header_length is None:
            raise ProtocolError(
                f"input {INPUT_NAME} has binary_data_size but the request has no "
                f"{HEADER_LENGTH} header"
            )
        if "data" in tensor:
            raise ProtocolError(f"input {INPUT_NAME} has both 'data' and binary_data_size; give one")
        if size != len(binary):
            raise ProtocolError(
                f"input {INPUT_NAME} binary_data_size={size} but {len(binary)} binary bytes follow "
                f"the JSON header"
            )
        texts = deserialize_bytes(binary, n)
    else:
        if len(binary):
            raise ProtocolError(
                f"{len(binary)} binary bytes follow the JSON header but no input declares "
                f"binary_data_size"
            )
        if "data" not in tensor:
            raise ProtocolError(f"input {INPUT_NAME} has no 'data' (or binary_data_size)")
        flat = _flatten(tensor["data"])
        if len(flat) != n:
            raise ProtocolError(
                f"input {INPUT_NAME} has {len(flat)} elements but shape {shape} needs {n}"
            )
        for i, t in enumerate(flat):
            if not isinstance(t, str):
                raise ProtocolError(
                    f"input {INPUT_NAME} element {i} is {type(t).__name__}; BYTES elements are "
                    f"JSON strings"
                )
        texts = flat  # orjson has checked the UTF-8 (lone surrogate escapes are refused)

    default_binary = params.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        raise ProtocolError("parameter 'binary_data_output' must be true or false")
    outputs_req = req.get("outputs")
    if outputs_req is None:
        outputs = {name: default_binary for name in OUTPUTS}
    else:
        if not isinstance(outputs_req, list) or not outputs_req:
            raise ProtocolError(f"'outputs' must be a non-empty list of {list(OUTPUTS)}")
        outputs = {}
        for o in outputs_req:
            name = o.get("name") if isinstance(o, dict) else None
            if name not in OUTPUTS:
                raise ProtocolError(f"unknown output {_show(name)}; this model has {list(OUTPUTS)}")
            oparams = o.get("parameters") or {}
            if not isinstance(oparams, dict):
                raise ProtocolError(f"output {name} 'parameters' must be a JSON object")
            if "shared_memory_region" in oparams:
                raise ProtocolError("output parameter 'shared_memory_region' is not supported here")
            if oparams.get("classification", 0):
                raise ProtocolError("the classification extension is not supported; read LABEL")
            binary_flag = oparams.get("binary_data", default_binary)
            if not isinstance(binary_flag, bool):
                raise ProtocolError(f"output {name} parameter 'binary_data' must be true or false")
            outputs[name] = binary_flag
    return InferRequest(texts=texts, id=req_id, outputs=outputs, parameters=params)


def build_infer_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    logits: np.ndarray,
    labels: np.ndarray,
) -> tuple[bytes, dict[str, str]]:
    """Serialise the outputs the request asked for: ``(body, extra headers)``.

    With any binary output the body is JSON header + raw little-endian tensors and the
    ``Inference-Header-Content-Length`` header is set.
    """
    logits = np.ascontiguousarray(logits, dtype="<f4").reshape(request.n, NUM_LABELS)
    labels = np.ascontiguousarray(labels, dtype="<i8").reshape(request.n)
    tensors = {
        OUTPUT_LOGITS: ("FP32", [request.n, NUM_LABELS], logits),
        OUTPUT_LABEL: ("INT64", [request.n], labels),
    }
    outputs, blobs = [], []
    for name, binary in request.outputs.items():
        datatype, shape, arr = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            blob = arr.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.reshape(-1).tolist()
        outputs.append(entry)
    resp: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        resp["id"] = request.id
    resp["outputs"] = outputs
    header = orjson.dumps(resp)
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH.lower(): str(len(header)),
    }


def model_metadata(
    model_name: str, version: str = "1", platform: str = "", parameters: dict | None = None
) -> dict[str, Any]:
    """``GET /v2/models/<name>``: tensors (batch dim -1), versions, platform, and our extras
    (variant, format, engine…) under ``parameters``."""
    return {
        "name": model_name,
        "versions": [version],
        "platform": platform,
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1, 1]}],
        "outputs": [
            {"name": OUTPUT_LOGITS, "datatype": "FP32", "shape": [-1, NUM_LABELS]},
            {"name": OUTPUT_LABEL, "datatype": "INT64", "shape": [-1]},
        ],
        "parameters": dict(parameters or {}),
    }


def model_config(
    model_name: str, max_batch_size: int, max_queue_delay_ms: float, platform: str = ""
) -> dict[str, Any]:
    """``GET /v2/models/<name>/config``: a Triton-style model config (dims without batch)."""
    return {
        "name": model_name,
        "platform": platform,
        "max_batch_size": max_batch_size,
        "input": [{"name": INPUT_NAME, "data_type": "TYPE_STRING", "dims": [1]}],
        "output": [
            {"name": OUTPUT_LOGITS, "data_type": "TYPE_FP32", "dims": [NUM_LABELS]},
            {"name": OUTPUT_LABEL, "data_type": "TYPE_INT64", "dims": [], "reshape": {"shape": []}},
        ],
        "dynamic_batching": {"max_queue_delay_microseconds": int(max_queue_delay_ms * 1000)},
    }


def make_request(
    texts: list[str], *, binary: bool = False, outputs: dict[str, bool] | None = None,
    request_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Build an infer request body (+ headers) for ``texts`` — for light clients and tests."""
    tensor: dict[str, Any] = {"name": INPUT_NAME, "shape": [len(texts), 1], "datatype": "BYTES"}
    blob = b""
    if binary:
        blob = serialize_bytes(texts)
        tensor["parameters"] = {"binary_data_size": len(blob)}
    else:
        tensor["data"] = list(texts)
    req: dict[str, Any] = {"inputs": [tensor]}
    if request_id is not None:
        req["id"] = request_id
    if outputs is not None:
        req["outputs"] = [{"name": k, "parameters": {"binary_data": v}} for k, v in outputs.items()]
    header = json.dumps(req).encode()
    headers = {"content-type": "application/json"}
    if binary:
        headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return header + blob, headers


def parse_infer_response(body: bytes, header_length: str | int | None = None) -> dict[str, np.ndarray]:
    """Decode a response body into ``{output name: numpy array}`` (JSON or binary outputs)."""
    hlen = int(header_length) if header_length is not None else len(body)
    resp = json.loads(body[:hlen])
    offset = hlen
    dtypes = {"FP32": "<f4", "INT64": "<i8"}
    result: dict[str, np.ndarray] = {}
    for out in resp["outputs"]:
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            arr = np.frombuffer(body[offset : offset + size], dtype=dtypes[out["datatype"]])
            offset += size
        else:
            arr = np.asarray(out["data"], dtype=dtypes[out["datatype"]])
        result[out["name"]] = arr.reshape(out["shape"])
    return result
