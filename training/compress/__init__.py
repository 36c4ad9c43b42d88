"""Compression of a trained variant into ``<variant>@<method>`` (pruning, quantisation, distillation).

``python -m training.compress --help``; one module per method (``magnitude``, ``structured``,
``ptq_dynamic``, ``qat``, ``distill``), the shared parts in :mod:`training.compress.base`, the
orchestration (energy windows, evaluation, atomic artifact, result.json) in
:mod:`training.compress.run`. See docs/compression.md.
"""
