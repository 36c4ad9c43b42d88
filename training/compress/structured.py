"""``structured-<pct>``: remove ``pct`` % of the FFN neurons of every encoder layer, by
importance, physically shrinking the matrices (fewer parameters and FLOPs, not zeros).

Importance of neuron *j* in a layer = mean |GLU output_j| over the calibration tokens × the L2
norm of its column in ``mlp.Wo`` (how much it moves the residual stream), measured with a
forward hook on the parent's training texts. Each layer keeps its most important neurons;
``config.intermediate_size`` shrinks with them (one size for every layer, as ModernBertConfig
has one), so the artifact reloads with ``from_pretrained``.

Attention heads are not removed: ModernBERT (transformers 5) derives ``head_dim`` from
``hidden_size / num_attention_heads`` and builds the attention output projection as
hidden × hidden, so a model with fewer heads would not reload from its config. The result
records this (``details.heads_removed = 0`` and why).
"""

from __future__ import annotations

from training.compress.base import Context, MethodSpec, Outcome, finetune

HEADS_NOTE = ("attention heads kept: ModernBertConfig ties head_dim to hidden_size/num_attention_heads "
              "and Wo to hidden×hidden, so fewer heads would not reload with AutoModelForSequenceClassification")


def ffn_importance(model, ctx: Context):
    """Per layer, a ``[intermediate_size]`` importance vector (see the module docstring)."""
    import torch

    layers = model.model.layers
    acc = [torch.zeros(int(model.config.intermediate_size)) for _ in layers]
    counts = [0 for _ in layers]

    def hook(i):
        def pre(module, args):
            h = args[0].detach().float()
            acc[i] += h.abs().reshape(-1, h.shape[-1]).sum(0).cpu()
            counts[i] += h.reshape(-1, h.shape[-1]).shape[0]
        return pre

    handles = [layer.mlp.Wo.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    model.eval()
    try:
        texts = ctx.calibration_texts()
        with torch.inference_mode():
            for k in range(0, len(texts), 8):
                enc = ctx.tokenizer(texts[k:k + 8], truncation=True, max_length=ctx.max_length, padding=True,
                                    return_tensors="pt")
                model(input_ids=enc["input_ids"].to(model.device), attention_mask=enc["attention_mask"].to(model.device))
    finally:
        for h in handles:
            h.remove()
    out = []
    for i, layer in enumerate(layers):
        col_norm = layer.mlp.Wo.weight.detach().float().norm(dim=0).cpu()
        out.append(acc[i] / max(counts[i], 1) * col_norm)
    return out


def shrink_ffn(model, keep_idx) -> None:
    """Replace every layer's ``mlp.Wi``/``mlp.Wo`` by the rows/columns in ``keep_idx[layer]``."""
    import torch
    import torch.nn as nn

    inter = int(model.config.intermediate_size)
    for layer, idx in zip(model.model.layers, keep_idx, strict=True):
        wi, wo = layer.mlp.Wi, layer.mlp.Wo
        rows = torch.cat([idx, idx + inter]).to(wi.weight.device)
        new_wi = nn.Linear(wi.in_features, len(rows), bias=wi.bias is not None).to(wi.weight.device, wi.weight.dtype)
        new_wo = nn.Linear(len(idx), wo.out_features, bias=wo.bias is not None).to(wo.weight.device, wo.weight.dtype)
        with torch.no_grad():
            new_wi.weight.copy_(wi.weight[rows])
            if wi.bias is not None:
                new_wi.bias.copy_(wi.bias[rows])
            new_wo.weight.copy_(wo.weight[:, idx.to(wo.weight.device)])
            if wo.bias is not None:
                new_wo.bias.copy_(wo.bias)
        layer.mlp.Wi, layer.mlp.Wo = new_wi, new_wo
    model.config.intermediate_size = len(keep_idx[0])


def compress(model, spec: MethodSpec, ctx: Context) -> Outcome:
    import torch

    inter = int(model.config.intermediate_size)
    n_keep = inter - round(inter * spec.fraction)
    if n_keep < 1 or n_keep == inter:
        from training.compress.base import CompressError

        raise CompressError(f"method {spec.text}: {spec.value} % of {inter} FFN neurons leaves {n_keep}; "
                            f"choose a percentage that removes at least one and keeps at least one")
    scores = ffn_importance(model, ctx)
    keep_idx = [torch.sort(torch.topk(s, n_keep).indices).values for s in scores]
    shrink_ffn(model, keep_idx)
    ft = finetune(model, ctx, ctx.finetune_steps)
    return Outcome(model=model, details={
        "ffn_neurons_before": inter, "ffn_neurons_after": n_keep, "ffn_removed_share": 1 - n_keep / inter,
        "importance": "mean |GLU activation| on calibration texts × L2 norm of the Wo column",
        "calibration_texts": len(ctx.calibration_texts()), "heads_removed": 0, "heads_note": HEADS_NOTE,
        "finetune": ft,
    })
