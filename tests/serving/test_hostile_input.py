"""Zero 5xx on hostile input: generated malformed requests against the real onnxruntime and
pytorch servers (loopback, tiny model), over raw sockets so that nothing on the client side
normalises or refuses what a hostile client can send.

Every answer must be 2xx or 4xx with a reason (a JSON ``{"error": …}`` from the server, or the
HTTP layer's own plain-text reason for a request it cannot even parse); afterwards the server is
alive, answers a valid request as before, counted no 500 and logged no traceback.

The same generators also drive the pure parser (``serving.protocol``) in-process, many more
examples, cheaply. Hypothesis runs derandomised (the same examples every run, reproducible in
CI); set ``HOSTILE_EXAMPLES`` to explore more.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import socket
import zlib
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving import protocol
from serving.protocol import HEADER_LENGTH, ProtocolError

MODEL = "bigvul-modernbert"
INFER = f"/v2/models/{MODEL}/infer"
MAX_BODY = 64 * 1024  # the servers here run with --max-body-bytes 65536: oversize is cheap
EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "1000"))
HYPOTHESIS = dict(
    deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)


@dataclass
class Raw:
    """One raw HTTP request (bytes on the wire) and what it is allowed to get back."""

    what: str
    method: str = "POST"
    path: str | bytes = INFER
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: the Content-Length header to send (None: the true length; False: none at all)
    content_length: int | str | None | bool = None
    #: close our sending side after the body (a client that lied about the length and left)
    half_close: bool = False
    #: no answer at all is acceptable (we lied about the length and the server waits/closes)
    may_get_no_answer: bool = False
    #: the server may answer before reading everything we send (a Content-Length that is too
    #: short or given twice): closing with our bytes unread, its kernel resets the connection,
    #: which can destroy the answer in flight (TCP, not the server: accepted as "no answer")
    answers_early: bool = False

    @property
    def may_be_reset(self) -> bool:
        # A body over the limit is refused (413) from its Content-Length before it is read.
        return self.answers_early or self.may_get_no_answer or len(self.body) > MAX_BODY

    def wire(self) -> bytes:
        path = self.path if isinstance(self.path, bytes) else self.path.encode("latin-1")
        lines = [self.method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
        for k, v in self.headers:
            lines.append(k.encode("latin-1") + b": " + v.encode("latin-1"))
        if self.content_length is None:
            lines.append(b"Content-Length: " + str(len(self.body)).encode())
        elif self.content_length is not False:
            lines.append(b"Content-Length: " + str(self.content_length).encode())
        lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


def send(port: int, req: Raw, timeout_s: float = 60.0) -> tuple[int, dict[str, str], bytes] | None:
    """Send ``req`` on a fresh connection; ``(status, headers, body)`` or None when the server
    closed without an answer (or, for a request that lied about its length, kept waiting)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        try:
            sock.sendall(req.wire())
            if req.half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (413) and closed: read what it said
        if req.may_get_no_answer and not req.half_close:
            sock.settimeout(2.0)  # it is waiting for bytes we will never send
        resp = http.client.HTTPResponse(sock, method=req.method)
        try:
            resp.begin()
            body = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, TimeoutError,
                http.client.IncompleteRead):
            return None
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def check_answer(req: Raw, answer: tuple[int, dict[str, str], bytes] | None) -> None:
    if answer is None:
        assert req.may_be_reset, f"{req.what}: the server closed without answering"
        return
    status, headers, body = answer
    assert 200 <= status < 500, f"{req.what}: HTTP {status}: {body[:300]!r}"
    if status >= 400 and req.method != "HEAD":  # (a HEAD answer has no body by definition)
        assert body.strip(), f"{req.what}: HTTP {status} without a reason"
        if headers.get("content-type", "").startswith("application/json"):
            reason = json.loads(body).get("error")
            assert isinstance(reason, str) and reason, f"{req.what}: {body[:300]!r}"


# -- generators -------------------------------------------------------------------------------

SURROGATES = ["\ud800", "a\udfffb"]
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "int main(void) { return 0; }", "é ü — naïve 🐛", "\ufeff",
                     *SURROGATES]),
    st.integers(0, 30_000).map(lambda n: "x" * n),  # long rows: truncation, a 60 kB body
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**80), 2**80),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10,
)
huge_ints = st.sampled_from([-1, -(2**31), 2**31, 2**63 - 1, -(2**63), 2**64, 2**70, 10**30])


def to_json(obj) -> bytes:
    # The stdlib writes NaN/Infinity, integers beyond 64 bits and lone surrogates as escapes,
    # which is exactly what a hostile client sends.
    return json.dumps(obj).encode()


@st.composite
def tensors(draw) -> tuple[dict, list]:
    """A TEXT tensor near the valid one, with a few fields broken; also its rows."""
    rows = draw(st.lists(texts, min_size=0, max_size=20))
    n = len(rows)
    t: dict = {}
    if draw(st.integers(0, 9)):
        t["name"] = "TEXT" if draw(st.integers(0, 5)) else draw(
            st.sampled_from(["text", "CODE", "", "TEXT\x00", "../TEXT"]) | json_values)
    if draw(st.integers(0, 9)):
        t["shape"] = draw(st.one_of(
            st.just([n, 1]), st.just([n, 1]), st.just([n]), st.just([n, 1, 1]), st.just([1, n]),
            st.lists(st.integers(-5, 40) | huge_ints, max_size=4), huge_ints.map(lambda h: [h, 1]),
            st.just([float(n), 1]), st.just([True, 1]), st.just(f"[{n}, 1]"), json_values,
        ))
    if draw(st.integers(0, 9)):
        t["datatype"] = "BYTES" if draw(st.integers(0, 3)) else draw(
            st.sampled_from(["INT64", "FP32", "BOOL", "STRING", "bytes", "BYTES ", ""]) | json_values)
    if draw(st.integers(0, 9)):
        t["data"] = draw(st.one_of(
            st.just(rows), st.just(rows), st.just([[r] for r in rows]), st.just(rows + rows),
            st.just(rows[:-1]), st.lists(scalars, max_size=n + 1), st.just({"0": rows}), json_values,
        ))
    if not draw(st.integers(0, 4)):
        t["parameters"] = draw(st.one_of(
            json_values, st.fixed_dictionaries({"binary_data_size": scalars | huge_ints}),
            st.just({"shared_memory_region": "r"}),
        ))
    return t, rows


@st.composite
def json_requests(draw) -> Raw:
    """An infer request whose JSON is valid but whose content may not be."""
    t, rows = draw(tensors())
    req: dict = {}
    k = draw(st.integers(0, 12))
    req["inputs"] = [t] if k > 2 else ([t, t] if k == 2 else draw(json_values))
    if not draw(st.integers(0, 4)):
        req["outputs"] = draw(st.one_of(
            st.just([{"name": "LABEL"}]), st.just([{"name": "LOGITS", "parameters": {"binary_data": True}}]),
            st.just([{"name": "LABEL"}, {"name": "LABEL"}]), st.just([{"name": "OTHER"}]),
            st.just([{"name": "LABEL", "parameters": {"classification": 2}}]), json_values,
        ))
    if not draw(st.integers(0, 5)):
        req["id"] = draw(texts | json_values)
    if not draw(st.integers(0, 5)):
        req["parameters"] = draw(st.just({"binary_data_output": True}) | json_values)
    if not draw(st.integers(0, 10)):
        req[draw(st.text(max_size=6))] = draw(json_values)
    body = to_json(req)
    if not draw(st.integers(0, 6)):  # the same key twice: the last one wins in every parser
        body = body[:-1] + b', "inputs": ' + to_json(req["inputs"]) + b"}"
    return Raw("json request", body=body, headers=[("Content-Type", "application/json")])


@st.composite
def binary_requests(draw) -> Raw:
    """The binary tensor extension with lying lengths (header, binary_data_size, elements)."""
    rows = draw(st.lists(texts.filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s)),
                         min_size=1, max_size=6))
    blob = protocol.serialize_bytes(rows)
    cut = draw(st.sampled_from(["none", "none", "truncate", "extend", "prefix", "non-utf8"]))
    if cut == "truncate":
        blob = blob[: draw(st.integers(0, max(len(blob) - 1, 0)))]
    elif cut == "extend":
        blob += draw(st.binary(min_size=1, max_size=16))
    elif cut == "prefix":  # the first element claims a length it does not have
        blob = draw(huge_ints.filter(lambda h: 0 <= h < 2**32) | st.integers(0, 2**32 - 1)).to_bytes(
            4, "little") + blob[4:]
    elif cut == "non-utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        blob = len(bad).to_bytes(4, "little") + bad
        rows = ["?"]
    n = draw(st.just(len(rows)) | st.integers(-2, 8) | huge_ints)
    size = draw(st.just(len(blob)) | st.integers(-3, len(blob) + 3) | huge_ints)
    tensor = {"name": "TEXT", "shape": [n, 1], "datatype": "BYTES",
              "parameters": {"binary_data_size": size}}
    if not draw(st.integers(0, 8)):
        tensor["data"] = rows
    outputs = draw(st.sampled_from([None, True, False]))
    req = {"inputs": [tensor]}
    if outputs is not None:
        req["outputs"] = [{"name": "LOGITS", "parameters": {"binary_data": outputs}},
                          {"name": "LABEL", "parameters": {"binary_data": not outputs}}]
    header = to_json(req)
    hlen = draw(st.one_of(
        st.just(str(len(header))), st.just(str(len(header))),
        st.integers(-5, len(header) + len(blob) + 5).map(str), huge_ints.map(str),
        st.sampled_from(["", "abc", "1e3", " 12", "0x10", "12.0", "١٢"]),
    ))
    headers = [("Content-Type", "application/octet-stream")]
    if draw(st.integers(0, 8)):
        headers.append((HEADER_LENGTH, hlen))
    if not draw(st.integers(0, 8)):
        headers.append((HEADER_LENGTH, str(len(header) + 1)))  # repeated, disagreeing
    return Raw("binary request", body=header + blob, headers=headers)


DEPTH_SITES = ("top", "data", "shape", "id", "parameters", "tensor-parameters", "outputs", "object")


@st.composite
def deep_requests(draw) -> Raw:
    """Deeply nested JSON in every field (the stdlib parser recursed into a 500 on these)."""
    depth = draw(st.sampled_from([100, 1_000, 1_025, 5_000, 20_000, 100_000]) | st.integers(2, 30_000))
    site = draw(st.sampled_from(DEPTH_SITES))
    nest = b"[" * depth + b'"x"' + b"]" * depth
    if site == "object":
        nest = b'{"a":' * depth + b"1" + b"}" * depth
    if not draw(st.integers(0, 5)):
        nest = nest[: len(nest) // 2]  # unclosed as well
    template = {
        "top": b"%s",
        "data": b'{"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"BYTES","data":%s}]}',
        "shape": b'{"inputs":[{"name":"TEXT","shape":%s,"datatype":"BYTES","data":["x"]}]}',
        "id": b'{"id":%s,"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"BYTES","data":["x"]}]}',
        "parameters": b'{"parameters":%s,"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"BYTES","data":["x"]}]}',
        "tensor-parameters": b'{"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"BYTES","data":["x"],"parameters":%s}]}',
        "outputs": b'{"outputs":%s,"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"BYTES","data":["x"]}]}',
        "object": b'{"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"BYTES","data":["x"],"z":%s}]}',
    }[site if site != "object" else draw(st.sampled_from(DEPTH_SITES[1:]))]
    body = template % nest
    enc = draw(st.sampled_from([None, None, "gzip"]))
    headers = [("Content-Type", "application/json")]
    if enc:
        body = gzip.compress(body, compresslevel=1)
        headers.append(("Content-Encoding", enc))
    return Raw(f"nested {depth} deep in {site}", body=body, headers=headers)


def _valid_body(n: int = 2) -> bytes:
    return protocol.make_request(["int main(void) { return 0; }"] * n)[0]


@st.composite
def encoded_requests(draw) -> Raw:
    """gzip/deflate bodies: valid, truncated, corrupted, mislabelled, bombs, two members."""
    enc = draw(st.sampled_from(["gzip", "deflate", "GZIP", "br", "gzip, deflate", "x-gzip", "identity", ""]))
    plain = draw(st.just(_valid_body()) | st.binary(max_size=64)
                 | st.integers(MAX_BODY - 10, 3 * MAX_BODY).map(lambda k: b" " * k + _valid_body()))
    body = gzip.compress(plain) if enc.lower() != "deflate" else zlib.compress(plain)
    how = draw(st.sampled_from(["as is", "as is", "truncate", "flip", "garbage tail", "two members",
                                "plain", "raw deflate"]))
    if how == "truncate":
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif how == "flip":
        i = draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1:]
    elif how == "garbage tail":
        body += draw(st.binary(min_size=1, max_size=32))
    elif how == "two members":
        body += gzip.compress(plain)
    elif how == "plain":
        body = plain
    elif how == "raw deflate":
        c = zlib.compressobj(wbits=-15)
        body = c.compress(plain) + c.flush()
    headers = [("Content-Type", "application/json"), ("Content-Encoding", enc)]
    return Raw(f"{enc} body ({how})", body=body, headers=headers)


@st.composite
def bytes_requests(draw) -> Raw:
    """Bodies that are not JSON at all, or JSON that is not UTF-8."""
    body = draw(st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.sampled_from([b"", b" ", b"null", b"[]", b"{}", b"\"inputs\"", b"\xef\xbb\xbf{}", b"NaN",
                         b'{"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"BYTES","data":["\xc3\x28"]}]}',
                         b'{"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"BYTES","data":["\xed\xa0\x80"]}]}',
                         b'\xff\xfe{\x00}\x00', b'{"inputs":[{"name":"TEXT"\x00}]}']),
    ))
    ctype = draw(st.sampled_from(["application/json", "text/plain", "application/octet-stream",
                                  "multipart/form-data; boundary=x", ""]))
    return Raw("non-JSON body", body=body, headers=[("Content-Type", ctype)] if ctype else [])


@st.composite
def length_lies(draw) -> Raw:
    """Content-Length that lies (shorter, longer, huge, negative, twice) or is missing."""
    body = draw(st.just(_valid_body()) | st.binary(max_size=64))
    lie = draw(st.sampled_from(["short", "long", "huge", "negative", "junk", "twice", "chunked",
                                "chunked-bad", "chunked-big"]))
    r = Raw(f"Content-Length {lie}", body=body)
    r.answers_early = lie in ("short", "twice")
    if lie == "short":
        r.content_length = draw(st.integers(0, max(len(body) - 1, 0)))
    elif lie == "long":  # promise more than we send, then stop sending (or just wait)
        r.content_length = len(body) + draw(st.integers(1, 1000))
        r.half_close = draw(st.booleans())
        r.may_get_no_answer = True
    elif lie == "huge":  # bigger than max_body_bytes: refused from the header alone
        r.content_length = draw(st.integers(MAX_BODY + 1, 2**62))
        r.may_get_no_answer = True  # (if the server reads first it never gets the bytes)
    elif lie == "negative":
        r.content_length = draw(st.integers(-(2**40), -1))
    elif lie == "junk":
        r.content_length = draw(st.sampled_from(["abc", "1e3", "0x10", "12 12", "+5", ""]))
    elif lie == "twice":
        r.headers.append(("Content-Length", str(len(body) + draw(st.integers(1, 5)))))
    elif lie.startswith("chunked"):
        r.content_length = False
        r.headers.append(("Transfer-Encoding", "chunked"))
        if lie == "chunked":
            r.body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        elif lie == "chunked-bad":
            r.body = b"zz\r\n" + body + b"\r\n0\r\n\r\n"
            r.may_get_no_answer = True
        else:  # streamed past the limit without any Content-Length
            chunk = b" " * 16384
            r.body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // 16384 + 2))
            r.body += b"0\r\n\r\n"
            r.may_get_no_answer = True  # it may close while we are still sending
    return r


TRAVERSAL = ["..", "../..", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "%2F", "bigvul-modernbert%00",
             "bigvul-modernbert/../bigvul-modernbert", "%00", "%ff%fe", "%ED%A0%80", "~root",
             "C:%5Cwindows", "bigvul-modernbert%20", "BIGVUL-MODERNBERT", "a" * 5000, "%", "%zz",
             "bigvul-modernbert;x", "\u00e9".encode().decode("latin-1")]


@st.composite
def path_requests(draw) -> Raw:
    """Traversal-like and odd model names / versions, on every model route and method."""
    name = draw(st.sampled_from(TRAVERSAL) | st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7e, exclude_characters="/?#"), max_size=20))
    version = draw(st.sampled_from([None, "1", "0", "-1", "..", "%2e%2e", "1%2F..", "9" * 40]))
    tail = draw(st.sampled_from(["/infer", "/infer", "", "/ready", "/config", "/infer/", "/infer?x=1"]))
    method = draw(st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS"]))
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version is not None else "") + tail
    if not draw(st.integers(0, 6)):
        path = draw(st.sampled_from(["/v2/../v2/health/ready", "//v2//models", "/metrics/..",
                                     "/v2/repository/index", "*", "/v2/models//infer", "/%ff"]))
    raw = path.encode("latin-1")
    if not draw(st.integers(0, 8)):
        raw = raw.replace(b"bigvul", b"\xffbigvul")  # non-ASCII bytes in the request target
    return Raw(f"{method} {path[:80]}", method=method, path=raw, body=_valid_body(1),
               headers=[("Content-Type", "application/json")])


hostile = st.one_of(json_requests(), json_requests(), binary_requests(), deep_requests(),
                    encoded_requests(), bytes_requests(), length_lies(), path_requests())


# -- the parser alone -------------------------------------------------------------------------


@settings(max_examples=3 * EXAMPLES, **HYPOTHESIS)
@given(hostile)
def test_parser_answers_every_hostile_body_with_a_4xx_or_a_request(req: Raw):
    """The pure parsing path: body decoding + OIP validation + the response for what passes."""
    try:
        enc = dict((k.lower(), v) for k, v in req.headers).get("content-encoding")
        body = protocol.decode_body(req.body, enc, MAX_BODY)
        hlen = next((v for k, v in req.headers if k == HEADER_LENGTH), None)
        parsed = protocol.parse_infer_request(body, hlen, max_batch_size=16)
    except ProtocolError as e:
        assert 400 <= e.status < 500 and e.reason
        assert len(e.reason) < 1000, e.reason  # a reason, not an echo of the request
        return
    import numpy as np

    logits = np.zeros((parsed.n, 2), dtype=np.float32)
    payload, headers = protocol.build_infer_response(MODEL, "1", parsed, logits, logits[:, 0].astype(int))
    assert payload and headers["content-type"]


# -- the servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_servers(serve_process, serving_root):
    common = ("--max-batch-size", "16", "--max-length", "64", "--max-body-bytes", str(MAX_BODY),
              "--max-queue-delay-ms", "0")
    procs = {e: serve_process(e, serving_root, *common, wait=False) for e in ("onnxruntime", "pytorch")}
    return {e: sp.wait_ready() for e, sp in procs.items()}


def _labels(port: int) -> list[int]:
    answer = send(port, Raw("valid", body=_valid_body(3)))
    assert answer is not None and answer[0] == 200, answer
    return protocol.parse_infer_response(answer[2])["LABEL"].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["onnxruntime", "pytorch"])
def test_server_answers_hostile_requests_without_5xx(hostile_servers, engine):
    from tests.serving.test_http_servers import metric

    sp = hostile_servers[engine]
    before = _labels(sp.port)
    sent = {"n": 0, "answered": 0}

    @settings(max_examples=EXAMPLES, **HYPOTHESIS)
    @given(hostile)
    def one(req: Raw) -> None:
        answer = send(sp.port, req)
        sent["n"] += 1
        sent["answered"] += answer is not None
        check_answer(req, answer)

    one()
    assert sent["n"] >= EXAMPLES, sent
    assert sp.proc.poll() is None, sp.log()
    assert _labels(sp.port) == before
    assert metric(sp.url, "inference_errors_total", 'code="500"') == 0
    log = sp.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI" not in log, log
