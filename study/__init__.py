"""The study's bottom package: concepts every stage shares and that import no stage.

``study.metrics`` — the one classification-metrics function (training evaluation, served
accuracy, compression). Every stage imports from here; this package imports none of them.
"""
