"""``ptq-dynamic``: PyTorch dynamic int8 quantisation of every Linear layer (post-training).

``torch.ao.quantization.quantize_dynamic`` stores Linear weights as int8 and quantises
activations per batch on the fly; it runs on CPU only. The artifact keeps the float weights
(safetensors cannot hold packed int8 Linear weights and still load with
``AutoModelForSequenceClassification``) and ``compression.json`` says
``serving.pytorch = dynamic_int8``: the pytorch engine applies the same call when it loads it.
``size_mb`` is the quantised model's in-memory state; accuracy is the quantised model's.
"""

from __future__ import annotations

import copy

from training.compress.base import Context, MethodSpec, Outcome, quantized_size_mb


def compress(model, spec: MethodSpec, ctx: Context) -> Outcome:
    import torch
    from torch.ao.quantization import quantize_dynamic

    q = quantize_dynamic(copy.deepcopy(model).cpu().eval(), {torch.nn.Linear}, dtype=torch.qint8)
    n_q = sum(1 for m in q.modules() if type(m).__module__.startswith("torch.ao.nn.quantized"))
    return Outcome(
        model=model, eval_model=q, size_mb=quantized_size_mb(q),
        compression_json={"serving": {"pytorch": "dynamic_int8"}},
        details={"quantization": "torch.ao.quantization.quantize_dynamic(Linear → qint8)",
                 "quantized_modules": n_q, "cpu_only": True,
                 "evaluated_as": "the int8 dynamically quantised model (as the pytorch engine serves it)",
                 "artifact_weights": "float32 (quantised at load by the pytorch engine)"},
    )
