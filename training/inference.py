"""The study's one inference layer: tokenisation, length-grouped batching, padding, and the model
calls of PyTorch and ONNX Runtime, texts in, logits out.

Training evaluation (:mod:`training.evaluate`), the serving engines' runners
(:mod:`serving.runners`, so the servers and the serving bench), the TensorRT parity runner and
compression evaluation all go through it, so a training F1 and a served F1 come from the same
tokenisation and the same model calls::

    enc = TextEncoder.from_dir("artifacts/v0/model", max_length=512, max_batch_tokens=1024)
    logits = infer(enc, torch_forward(model), texts)          # float32 [n, 2], request order

It lives in ``training/`` (the layering is energy ← training ← serving: serving may import this,
training never imports serving) and imports neither torch nor onnxruntime at module level, so
the onnxruntime server stays free of torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
#: Model inputs, in the order the exports declare them.
MODEL_INPUTS = ("input_ids", "attention_mask")

Feed = dict[str, np.ndarray]
Forward = Callable[[Feed], np.ndarray]


def find_tokenizer_dir(candidates: Sequence[Path | None]) -> Path:
    """The first of ``candidates`` holding a tokenizer (``tokenizer.json``/``tokenizer_config.json``)."""
    for c in candidates:
        if c is not None and any((Path(c) / f).exists() for f in TOKENIZER_FILES):
            return Path(c)
    raise FileNotFoundError(
        "no tokenizer found (looked for tokenizer.json/tokenizer_config.json in "
        f"{[str(c) for c in candidates if c is not None]})"
    )


def _capped(max_length: int, model_max: Any) -> int:
    """``max_length`` never above what the tokenizer (and so the model) was built for."""
    if max_length < 8:
        raise ValueError(f"max_length={max_length} is too small; allowed: >= 8 tokens")
    if isinstance(model_max, int) and 0 < model_max < 1_000_000:
        return min(int(max_length), model_max)
    return int(max_length)


class TextEncoder:
    """Texts → model feeds: truncation to ``max_length`` tokens, rows grouped by length, each
    group padded to its longest row.

    :meth:`feeds` sorts a batch's rows by token count and cuts them greedily into model calls
    whose padded size (rows × longest row) stays within ``max_batch_tokens`` and whose row count
    stays within ``max_batch_rows`` (None: no bound). On CPU a batch of mixed lengths pads every
    row to the longest, and a big padded batch also falls out of cache (measured on the tiny
    model, 256 tokens: 5.9 ms/row at 16 rows vs 3.8 at 1 or 4); grouped, rows cost about what
    they would alone while short ones still share calls.

    Build it with :meth:`from_dir` (the Rust ``tokenizers`` library on ``tokenizer.json``, what
    ``PreTrainedTokenizerFast`` wraps, so a server needs neither torch nor transformers; else
    ``AutoTokenizer``) or :meth:`from_tokenizer` (an already loaded HF tokenizer).
    """

    def __init__(self, encode: Callable[[list[str]], list[list[int]]], pad_id: int, max_length: int, *,
                 max_batch_tokens: int | None = None, max_batch_rows: int | None = None,
                 source: str = "") -> None:
        self._encode = encode
        self.pad_id = int(pad_id)
        self.max_length = int(max_length)
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_rows = max_batch_rows
        self.source = source

    @classmethod
    def from_dir(cls, tokenizer_dir: str | os.PathLike, max_length: int, **groups: int | None) -> TextEncoder:
        d = Path(tokenizer_dir)
        config_path = d / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        max_length = _capped(max_length, config.get("model_max_length"))
        if not (d / "tokenizer.json").exists():
            from transformers import AutoTokenizer

            return cls.from_tokenizer(AutoTokenizer.from_pretrained(str(d)), max_length, **groups)
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        pad_token = config.get("pad_token") or "[PAD]"
        if isinstance(pad_token, dict):  # older configs store an AddedToken dict
            pad_token = pad_token.get("content", "[PAD]")
        pad_id = tok.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"{d}: pad token {pad_token!r} not in the vocabulary")
        return cls(_rust_encoder(tok, max_length), pad_id, max_length, source=str(d), **groups)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, max_length: int, **groups: int | None) -> TextEncoder:
        """From a ``transformers`` tokenizer: a fast one runs its own Rust tokenizer (a copy,
        truncating, not padding); a slow one is called per batch without padding."""
        max_length = _capped(max_length, getattr(tokenizer, "model_max_length", None))
        if tokenizer.pad_token_id is None:
            raise ValueError(f"tokenizer {type(tokenizer).__name__} has no pad token")
        backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        if backend is not None:
            from tokenizers import Tokenizer

            encode = _rust_encoder(Tokenizer.from_str(backend.to_str()), max_length,
                                   getattr(tokenizer, "truncation_side", "right"))
        else:

            def encode(texts: list[str]) -> list[list[int]]:
                return list(tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])

        return cls(encode, tokenizer.pad_token_id, max_length, source=type(tokenizer).__name__, **groups)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            raise ValueError("predict() needs at least one text")
        return self._encode(list(texts))

    def pad(self, rows: Sequence[Sequence[int]]) -> Feed:
        """``{input_ids, attention_mask}`` int64 ``[len(rows), longest row]``."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def tokenize(self, texts: Sequence[str]) -> Feed:
        """The whole batch padded to its longest row (one model call)."""
        return self.pad(self.encode(texts))

    def groups(self, rows: Sequence[Sequence[int]]) -> list[list[int]]:
        """Row indices cut into model calls (see the class docstring), shortest rows first."""
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out: list[list[int]] = [[]]
        for i in order:  # ascending: the row being added is the group's longest
            g = out[-1]
            too_many_tokens = self.max_batch_tokens is not None and (len(g) + 1) * len(rows[i]) > self.max_batch_tokens
            too_many_rows = self.max_batch_rows is not None and len(g) >= self.max_batch_rows
            if g and (too_many_tokens or too_many_rows):
                out.append([])
            out[-1].append(i)
        return out

    def feeds(self, texts: Sequence[str]) -> list[tuple[np.ndarray, Feed]]:
        """Tokenise the whole batch once, then ``[(row indices, feed), …]`` per model call."""
        rows = self.encode(texts)
        return [(np.asarray(g), self.pad([rows[i] for i in g])) for g in self.groups(rows)]

    def describe(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "max_batch_tokens": self.max_batch_tokens,
                "max_batch_rows": self.max_batch_rows}


def _rust_encoder(tok: Any, max_length: int, direction: str = "right") -> Callable[[list[str]], list[list[int]]]:
    tok.enable_truncation(max_length=max_length, direction=direction)
    tok.no_padding()  # padded per length group (TextEncoder.feeds)

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch(texts)]

    return encode


def scatter(parts: Sequence[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Rows of the per-group outputs put back in request order (float32 ``[n, labels]``)."""
    logits = np.empty((n, parts[0][1].shape[-1]), dtype=np.float32)
    for idx, out in parts:
        logits[idx] = out
    return logits


def labels_of(logits: np.ndarray) -> np.ndarray:
    """The predicted class of each row (int64)."""
    return np.argmax(logits, axis=-1).astype(np.int64)


def infer(encoder: TextEncoder, forward: Forward, texts: Sequence[str],
          on_rows: Callable[[int], None] | None = None) -> np.ndarray:
    """Logits (float32 ``[len(texts), labels]``, in the order of ``texts``): ``texts`` tokenised
    once, run group by group (:meth:`TextEncoder.feeds`) through ``forward``; ``on_rows(k)``
    after each group of ``k`` rows (a progress bar)."""
    parts = []
    for idx, feed in encoder.feeds(texts):
        parts.append((idx, forward(feed)))
        if on_rows is not None:
            on_rows(len(idx))
    return scatter(parts, len(texts))


# -- the model calls ----------------------------------------------------------------------------


def torch_forward(model: Any, device: str = "cpu", autocast_dtype: Any = None) -> Forward:
    """A ``transformers`` classifier as a :data:`Forward` (inference mode; ``autocast_dtype``:
    mixed precision on ``device``)."""
    import torch

    model.eval()

    def forward(feed: Feed) -> np.ndarray:
        ctx = torch.autocast(device_type=device, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
        with torch.inference_mode(), ctx:
            out = model(**{k: torch.from_numpy(feed[k]).to(device) for k in MODEL_INPUTS})
        return out.logits.float().cpu().numpy()

    return forward


def onnx_session(path: str | os.PathLike, *, providers: Sequence[str] = ("CPUExecutionProvider",),
                 intra_op_threads: int | None = None, inter_op_threads: int | None = None,
                 allow_spinning: bool = False) -> Any:
    """An ONNX Runtime session on ``path`` (all graph optimisations on).

    ORT's intra-op threads spin-wait for work by default: between requests they burn CPU
    (measured here: ~45 ms CPU per request vs ~5-25 for PyTorch), which an energy study would
    charge to the engine, so spinning is off unless asked for.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        opts.intra_op_num_threads = int(intra_op_threads)
    if inter_op_threads:
        opts.inter_op_num_threads = int(inter_op_threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if allow_spinning else "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))


def onnx_forward(session: Any) -> Forward:
    """An ONNX Runtime session (inputs ``input_ids`` [+ ``attention_mask``], output ``logits``
    or its first output) as a :data:`Forward`; ``ValueError`` for other inputs."""
    inputs = [i.name for i in session.get_inputs()]
    if "input_ids" not in inputs or any(n not in MODEL_INPUTS for n in inputs):
        raise ValueError(f"unexpected ONNX inputs {inputs}; expected input_ids [+ attention_mask]")
    outputs = [o.name for o in session.get_outputs()]
    output = "logits" if "logits" in outputs else outputs[0]

    def forward(feed: Feed) -> np.ndarray:
        (out,) = session.run([output], {k: feed[k] for k in inputs})
        return np.asarray(out, dtype=np.float32)

    return forward
