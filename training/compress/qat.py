"""``qat``: quantisation-aware fine-tuning with fake quantisation, served as an ONNX QDQ model.

Every Linear layer is wrapped so that its input activation passes through a per-tensor uint8
``torch.ao.quantization.FakeQuantize`` (moving-average min/max observer) and its weight through
the per-channel symmetric int8 one (``default_per_channel_weight_fake_quant``) — the scheme ONNX
Runtime's static QDQ quantisation uses (uint8 activations, int8 per-channel weights). The
model is fine-tuned under that rounding for ``--finetune-steps`` steps (straight-through
gradients), the observers are frozen, and the accuracy is measured on the fake-quantised
(simulated int8) model. The artifact holds the fine-tuned float weights; ``compression.json``
marks it ``qat``, and ``make export FORMAT=onnx-int8`` of it builds a static QDQ model with
``onnxruntime.quantization.quantize_static`` (activation ranges recalibrated on training texts;
the learned ranges are recorded here) that ONNX Runtime runs in int8.
"""

from __future__ import annotations

import copy
from typing import Any

from training.compress.base import Context, MethodSpec, Outcome, finetune


def _fake_quant_linear():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.ao.quantization import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        default_per_channel_weight_fake_quant,
    )

    class FakeQuantLinear(nn.Module):
        """``linear`` with int8 fake quantisation of its input and weight."""

        def __init__(self, linear: nn.Linear) -> None:
            super().__init__()
            self.linear = linear
            self.act_fq = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                       dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False)
            self.weight_fq = default_per_channel_weight_fake_quant()

        def forward(self, x):
            return F.linear(self.act_fq(x), self.weight_fq(self.linear.weight), self.linear.bias)

    return FakeQuantLinear


def _swap(model, make) -> list[str]:
    """Replace every ``nn.Linear`` in ``model`` by ``make(linear)``; returns their names."""
    import torch.nn as nn

    names = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, make(child))
                names.append(f"{name}.{child_name}" if name else child_name)
    return names


def unwrap(model) -> None:
    """Put the plain Linear layers back (the fine-tuned float weights), in place."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if hasattr(child, "act_fq") and hasattr(child, "linear"):
                setattr(module, child_name, child.linear)


def compress(model, spec: MethodSpec, ctx: Context) -> Outcome:
    import torch
    from torch.ao.quantization import disable_observer

    fql = _fake_quant_linear()
    wrapped = _swap(model, fql)
    ft = finetune(model, ctx, ctx.finetune_steps)
    model.apply(disable_observer)  # freeze the learned ranges for the simulated-int8 evaluation
    ranges: dict[str, Any] = {}
    for name, m in model.named_modules():
        if isinstance(m, fql):
            obs = m.act_fq.activation_post_process
            ranges[name] = {"min": float(obs.min_val), "max": float(obs.max_val),
                            "scale": float(m.act_fq.scale), "zero_point": int(m.act_fq.zero_point)}
    saved = copy.deepcopy(model)
    unwrap(saved)
    with torch.no_grad():
        leftover = [n for n, _ in saved.named_modules() if n.endswith("act_fq")]
    if leftover:
        raise RuntimeError(f"fake-quant modules left after unwrapping: {leftover[:3]}")
    scheme = {"activations": "uint8 per-tensor affine (MovingAverageMinMaxObserver)",
              "weights": "int8 per-channel symmetric (default_per_channel_weight_fake_quant)",
              "layers": "every nn.Linear (encoder, head, classifier)"}
    return Outcome(
        model=saved, eval_model=model,
        compression_json={"qat": {"scheme": scheme, "activation_ranges": ranges},
                          "serving": {"onnx-int8": "static QDQ (onnxruntime.quantization.quantize_static)"}},
        details={"fake_quantized_layers": len(wrapped), "scheme": scheme, "finetune": ft,
                 "evaluated_as": "the fake-quantised (simulated int8) PyTorch model; the served int8 model "
                                 "is the onnx-int8 export (static QDQ)"},
    )
