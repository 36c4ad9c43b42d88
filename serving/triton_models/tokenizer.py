"""Triton python-backend model: TEXT (BYTES [batch, 1]) → input_ids, attention_mask (INT64).

Tokenises with the artifact's own ``tokenizer.json`` (copied into ``1/tokenizer/``) using the
Rust ``tokenizers`` library — the same settings as the project's servers (truncate to
``max_length``, pad to the longest row). Rows are then padded up to a multiple of
``pad_to_multiple_of`` tokens: Triton's dynamic batcher only merges requests whose tensors have
the same shape, so bucketing sequence lengths lets the model step batch across requests
(padding is masked, so the logits do not change beyond float noise).

Parameters (config.pbtxt): ``max_length``, ``pad_to_multiple_of``.
A request that cannot be decoded gets an error response; the others in the batch still answer.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's python backend


class TritonPythonModel:
    def initialize(self, args):
        from tokenizers import Tokenizer

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        tok_dir = os.path.join(args["model_repository"], args["model_version"], "tokenizer")
        tok_config_path = os.path.join(tok_dir, "tokenizer_config.json")
        tok_config = {}
        if os.path.exists(tok_config_path):
            with open(tok_config_path) as fh:
                tok_config = json.load(fh)
        max_length = int(params.get("max_length", "512"))
        model_max = tok_config.get("model_max_length")
        if isinstance(model_max, int) and 0 < model_max < 1_000_000:
            max_length = min(max_length, model_max)
        pad_token = tok_config.get("pad_token") or "[PAD]"
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content", "[PAD]")
        self.tokenizer = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
        self.pad_id = self.tokenizer.token_to_id(pad_token)
        if self.pad_id is None:
            raise ValueError(f"pad token {pad_token!r} is not in {tok_dir}/tokenizer.json")
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.enable_padding(pad_id=self.pad_id, pad_token=pad_token)
        self.max_length = max_length
        self.multiple = max(1, int(params.get("pad_to_multiple_of", "1")))

    def _encode(self, texts):
        encs = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        seq = ids.shape[1]
        target = min(self.max_length, -(-seq // self.multiple) * self.multiple)
        if target > seq:
            pad = ((0, 0), (0, target - seq))
            ids = np.pad(ids, pad, constant_values=self.pad_id)
            mask = np.pad(mask, pad, constant_values=0)
        return ids, mask

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
                texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in raw]
                ids, mask = self._encode(texts)
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("input_ids", ids),
                    pb_utils.Tensor("attention_mask", mask),
                ]))
            except Exception as e:  # one bad request must not fail the whole batch
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(f"tokenizer: {type(e).__name__}: {e}")))
        return responses
