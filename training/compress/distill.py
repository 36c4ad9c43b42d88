"""``distill-<layers>``: knowledge distillation into a student with ``<layers>`` encoder layers.

The student is the teacher (the parent) with only ``<layers>`` of its encoder layers kept,
evenly spaced and always including the first (same tokenizer, width and head; a common
initialisation that starts far better than random). It is trained for ``--finetune-steps``
optimizer steps on the parent's training split with ``α · CE(labels) + (1 − α) · T² ·
KL(teacher_T ‖ student_T)`` (Hinton et al., 2015; T = 2, α = 0.5); the teacher runs forward on
every batch inside the measured window, as distillation costs.
"""

from __future__ import annotations

import copy

from training.compress.base import CompressError, Context, MethodSpec, Outcome, finetune

TEMPERATURE = 2.0
ALPHA = 0.5


def student_layers(teacher_layers: int, layers: int) -> list[int]:
    """Evenly spaced indices, first layer included: (4, 2) → [0, 3]; (2, 1) → [0]."""
    if not 1 <= layers < teacher_layers:
        raise CompressError(f"distill-{layers}: the student must have 1 to {teacher_layers - 1} layers "
                            f"(the teacher has {teacher_layers})")
    if layers == 1:
        return [0]
    return sorted({round(i * (teacher_layers - 1) / (layers - 1)) for i in range(layers)})


def compress(teacher, spec: MethodSpec, ctx: Context) -> Outcome:
    import torch
    import torch.nn.functional as F

    from training.model import select_layers

    n = int(teacher.config.num_hidden_layers)
    keep = student_layers(n, int(spec.value))
    student = select_layers(copy.deepcopy(teacher), keep)
    teacher.to(ctx.device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss_fn(model, inputs):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        out = model(**inputs)
        with torch.no_grad():
            t_logits = teacher(**inputs).logits
        kd = F.kl_div(F.log_softmax(out.logits / TEMPERATURE, -1), F.softmax(t_logits / TEMPERATURE, -1),
                      reduction="batchmean") * TEMPERATURE ** 2
        ce = F.cross_entropy(out.logits, labels)
        return ALPHA * ce + (1 - ALPHA) * kd, out

    ft = finetune(student, ctx, ctx.finetune_steps, loss_fn=loss_fn)
    return Outcome(model=student, details={
        "teacher_layers": n, "student_layers": len(keep), "initialised_from_teacher_layers": keep,
        "loss": f"{ALPHA}·CE + {1 - ALPHA}·T²·KL, T={TEMPERATURE}", "finetune": ft,
    })
