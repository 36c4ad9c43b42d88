"""Triton python-backend model running ``model.onnx`` with ONNX Runtime (CPU).

Same inputs/outputs as the native ``onnxruntime_onnx`` model (input_ids, attention_mask →
logits). Used where Triton's onnxruntime backend is absent — PyTriton's bundled tritonserver
ships only the python backend — so the generated ensemble can be exercised end to end on any
box (``python -m serving.triton_repo --backend python-onnxruntime``). Real measurements use
the native backend.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's python backend


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        so = ort.SessionOptions()
        threads = int(params.get("intra_op_thread_count", "0"))
        if threads > 0:
            so.intra_op_num_threads = threads
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        # Requests the dynamic batcher grouped here have the same sequence length (the
        # tokenizer buckets it), so they run as one ONNX Runtime call.
        feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy()
                  for n in ("input_ids", "attention_mask")} for r in requests]
        groups = {}
        for i, f in enumerate(feeds):
            groups.setdefault(f["input_ids"].shape[1], []).append(i)
        out = [None] * len(requests)
        for idxs in groups.values():
            batch = {n: np.concatenate([feeds[i][n] for i in idxs]) for n in ("input_ids", "attention_mask")}
            (logits,) = self.session.run(["logits"], batch)
            start = 0
            for i in idxs:
                n = feeds[i]["input_ids"].shape[0]
                out[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("logits", np.ascontiguousarray(logits[start:start + n], dtype=np.float32))])
                start += n
        return out
