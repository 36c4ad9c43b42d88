"""Open Inference Protocol parsing/serialisation on known inputs (no server)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serving import protocol
from serving.protocol import HEADER_LENGTH, ProtocolError, parse_infer_request


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


def _req(data, shape=None, datatype="BYTES", name="TEXT", **extra) -> bytes:
    shape = shape if shape is not None else [len(data), 1]
    return _json({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}], **extra})


def test_json_request_nested_or_flat_data():
    flat = parse_infer_request(_req(["a", "b"]))
    nested = parse_infer_request(_req([["a"], ["b"]]))
    assert flat.texts == nested.texts == ["a", "b"]
    assert flat.outputs == {"LOGITS": False, "LABEL": False}


def test_binary_request_roundtrip_with_tritonclient_encoding():
    # tritonclient's own serializer: the wire format must be exactly what it sends.
    from tritonclient.utils import serialize_byte_tensor

    texts = ["int main() { return 0; }", "é ü — naïve", ""]
    arr = np.array([[t.encode()] for t in texts], dtype=object)
    blob = serialize_byte_tensor(arr).item()
    assert blob == protocol.serialize_bytes(texts)
    header = _json({
        "inputs": [{"name": "TEXT", "shape": [3, 1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(blob)}}],
        "parameters": {"binary_data_output": True},
    })
    req = parse_infer_request(header + blob, str(len(header)))
    assert req.texts == texts
    assert req.outputs == {"LOGITS": True, "LABEL": True}


def test_response_json_and_binary_decode_to_the_same_arrays():
    logits = np.array([[0.5, -1.25], [2.0, 3.0]], dtype=np.float32)
    labels = np.array([0, 1], dtype=np.int64)
    for binary in (False, True):
        req = protocol.InferRequest(texts=["a", "b"], id="r1",
                                    outputs={"LOGITS": binary, "LABEL": binary})
        body, headers = protocol.build_infer_response("m", "1", req, logits, labels)
        out = protocol.parse_infer_response(body, headers.get(HEADER_LENGTH.lower()))
        np.testing.assert_array_equal(out["LOGITS"], logits)
        np.testing.assert_array_equal(out["LABEL"], labels)
        assert json.loads(body[: int(headers.get(HEADER_LENGTH.lower(), len(body)))])["id"] == "r1"


def test_requested_outputs_only():
    req = parse_infer_request(_req(["a"], outputs=[{"name": "LABEL"}]))
    assert req.outputs == {"LABEL": False}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "empty request body"),
        (b"[1, 2]", "JSON object"),
        (_req(["a"], name="INPUT"), "unknown input tensor 'INPUT'"),
        (_req(["a"], datatype="FP32"), "datatype 'FP32'; expected 'BYTES'"),
        (_req(["a"], shape=[1]), "expected [batch, 1]"),
        (_req(["a", "b"], shape=[2, 2]), "expected [batch, 1]"),
        (_req([], shape=[0, 1]), "empty batch"),
        (_req(["a"], shape=[2, 1]), "needs 2"),
        (_req([1]), "element 0 is int"),
        (_req(["\ud800"]), "not valid UTF-8"),
        (b'{"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["\xff"]}]}',
         "not valid UTF-8"),
        (_req(["a"], outputs=[{"name": "PROBS"}]), "unknown output 'PROBS'"),
        (_json({"inputs": []}), "non-empty list"),
        (_json({"inputs": [{"name": "TEXT"}], "extra": 1}), "unknown request fields ['extra']"),
    ],
)
def test_bad_requests_name_the_problem(body, needle):
    with pytest.raises(ProtocolError) as e:
        parse_infer_request(body, max_batch_size=8)
    assert e.value.status == 400
    assert needle in e.value.reason


def test_binary_errors():
    header = _json({"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES",
                                "parameters": {"binary_data_size": 6}}]})
    bad_utf8 = protocol.serialize_bytes(["x"])[:4].replace(b"\x01", b"\x02") + b"\xff\xfe"
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        parse_infer_request(header + bad_utf8, len(header))
    with pytest.raises(ProtocolError, match="no Inference-Header-Content-Length"):
        parse_infer_request(header)
    with pytest.raises(ProtocolError, match="outside the body"):
        parse_infer_request(header, 10_000)
    short = protocol.serialize_bytes(["abcdef"])[:6]  # claims 6 bytes, holds 2
    with pytest.raises(ProtocolError, match="claims 6 bytes"):
        parse_infer_request(header + short, len(header))


def test_rows_per_request_capped():
    with pytest.raises(ProtocolError, match="max_batch_size=2"):
        parse_infer_request(_req(["a", "b", "c"]), max_batch_size=2)


def test_metadata_names_tensors():
    meta = protocol.model_metadata("bigvul-modernbert", parameters={"variant": "v0", "format": "onnx"})
    assert [i["name"] for i in meta["inputs"]] == ["TEXT"]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("LOGITS", "FP32"), ("LABEL", "INT64")]
    assert meta["parameters"] == {"variant": "v0", "format": "onnx"}


def test_deep_nesting_is_a_400_not_a_recursion_error():
    for depth in (1_025, 100_000):
        for body in (b"[" * depth + b"]" * depth,
                     _json({"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES"}]})[:-3]
                     + b', "data": ' + b"[" * depth + b'"x"' + b"]" * depth + b"}]}"):
            with pytest.raises(ProtocolError) as e:
                parse_infer_request(body)
            assert e.value.status == 400 and "depth limit" in e.value.reason


def test_decode_body_caps_and_checks_every_encoding():
    import gzip
    import zlib

    body = _req(["int main() {}"])
    assert protocol.decode_body(body, None, 4096) == body
    assert protocol.decode_body(gzip.compress(body), "gzip", 4096) == body
    assert protocol.decode_body(zlib.compress(body), "Deflate", 4096) == body
    # RFC 1952: a gzip body may be several members; a deflate one is one stream.
    assert protocol.decode_body(gzip.compress(body[:10]) + gzip.compress(body[10:]), "gzip", 4096) == body
    cases = [
        (gzip.compress(b" " * 10_000), "gzip", 413, "max_body_bytes=4096"),  # a bomb
        (gzip.compress(b" " * 3000) * 2, "gzip", 413, "max_body_bytes=4096"),  # two members over
        (gzip.compress(body)[:-4], "gzip", 400, "truncated"),
        (b"not gzip", "gzip", 400, "corrupt"),
        (gzip.compress(body) + b"junk", "gzip", 400, "corrupt"),
        (zlib.compress(body) + b"junk", "deflate", 400, "after the end"),
        (body, "br", 415, "allowed: identity, gzip, deflate"),
    ]
    for raw, enc, status, needle in cases:
        with pytest.raises(ProtocolError) as e:
            protocol.decode_body(raw, enc, 4096)
        assert e.value.status == status and needle in e.value.reason, (enc, e.value.reason)


def test_reasons_never_echo_a_huge_value():
    with pytest.raises(ProtocolError) as e:
        parse_infer_request(_req(["a"], datatype="X" * 100_000))
    assert len(e.value.reason) < 200
