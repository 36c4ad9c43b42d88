"""``magnitude-<pct>``: global unstructured magnitude pruning of the encoder's Linear weights.

``torch.nn.utils.prune.global_unstructured`` with L1 magnitude ranks every weight of every
encoder Linear layer (attention Wqkv/Wo, FFN Wi/Wo) together and zeroes the smallest ``pct`` %
of them; an optional fine-tune (``--finetune-steps``) keeps the masks applied, then
``prune.remove`` makes the zeros permanent. The matrices keep their shape: dense kernels still
multiply the zeros (see ``SERVING_NOTES``).
"""

from __future__ import annotations

from typing import Any

from training.compress.base import Context, MethodSpec, Outcome, encoder_linears, finetune


def compress(model, spec: MethodSpec, ctx: Context) -> Outcome:
    import torch.nn.utils.prune as prune

    targets = [(m, "weight") for _, m in encoder_linears(model)]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=spec.fraction)
    ft = finetune(model, ctx, ctx.finetune_steps)  # the masks' forward pre-hooks stay active
    for m, name in targets:
        prune.remove(m, name)
    details: dict[str, Any] = {
        "pruning": "torch.nn.utils.prune.global_unstructured (L1Unstructured), made permanent with prune.remove",
        "scope": "every Linear weight inside the encoder layers (attention Wqkv/Wo, FFN Wi/Wo)",
        "amount": spec.fraction, "layers_pruned": len(targets), "finetune": ft,
    }
    return Outcome(model=model, details=details)
