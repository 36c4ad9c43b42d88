"""Compression (training.compress): every method on a tiny trained parent, a few steps each.

One parent (hidden 32, 2 layers, 2 training steps, 16 test rows) is trained once for the module;
each method then runs in-process with 2 fine-tuning steps, the ``estimate`` meter and no idle
baseline. Sparsity is counted from the saved safetensors, the structured artifact goes through
the real ONNX export and its parity check, the QAT artifact through the static QDQ export.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.training.conftest import TINY_SETS
from training.compress.base import CompressError, parse_method
from training.config import ConfigError, split_variant

ROOT = Path(__file__).resolve().parents[2]
FAST = {"idle_s": 0.0, "meter": "estimate", "calibration_n": 8, "threads": 1}


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A trained tiny v0 under ``<tmp>/artifacts`` and ``<tmp>/results``."""
    from study.paths import Paths
    from training.config import resolve
    from training.train import RunPaths, run_variant

    root = tmp_path_factory.mktemp("compress")
    cfg = resolve("v0", TINY_SETS)
    res = run_variant("v0", cfg, paths=RunPaths("v0", Paths(artifacts=root / "artifacts", results=root / "results")))
    assert res["status"] == "ok", res.get("failure_reason")
    return root


def _compress(root: Path, method: str, **kw):
    from training.compress.run import compress

    return compress("v0", method, results_dir=root / "results", artifacts_dir=root / "artifacts",
                    finetune_steps=kw.pop("finetune_steps", 2), **{**FAST, **kw})


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _check_result(res: dict, root: Path) -> None:
    on_disk = json.loads((root / "results" / "compress" / res["variant"] / "result.json").read_text())
    assert on_disk["status"] == "ok"
    assert on_disk["energy_kwh"]["compress"] > 0
    assert on_disk["energy_source"]["compress"] == "estimate" and on_disk["energy_kind"] == "estimated"
    assert on_disk["duration_s"]["compress"] > 0
    for k in ("size_mb", "params", "nonzero_params", "sparsity", "flops_per_request", "accuracy", "f1", "mcc"):
        assert on_disk[k] is not None, k
        assert on_disk["parent_figures"][k] is not None, k
    assert on_disk["n_evaluated"] == on_disk["parent_figures"]["n_evaluated"] == 16  # the parent's test rows
    assert on_disk["serving_note"]
    model_dir = Path(on_disk["artifact"])
    assert {"config.json", "model.safetensors", "tokenizer.json", "split.json", "compression.json"} <= {
        p.name for p in model_dir.iterdir()}
    assert not list(model_dir.parent.glob(".model.tmp-*"))  # the temp dir was renamed away


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, match", [
    ("pruning-50", "unknown compression method 'pruning-50'; allowed: magnitude-<pct>"),
    ("magnitude-0", r"percentage must be in \(0, 100\), got 0"),
    ("structured-100", r"percentage must be in \(0, 100\), got 100"),
    ("magnitude-150", r"percentage must be in \(0, 100\)"),
    ("magnitude", "needs a percentage"),
    ("distill-0", "at least 1 layer"),
])
def test_bad_method_names_the_problem_and_the_allowed_values(bad, match):
    with pytest.raises(CompressError, match=match) as e:
        parse_method(bad)
    assert "ptq-dynamic, qat, distill-<layers>" in str(e.value) and "\n" not in str(e.value)


def test_method_names_are_canonical():
    assert parse_method("magnitude-50.0").text == "magnitude-50"
    assert parse_method("structured-12.5").fraction == 0.125
    assert parse_method("distill-3").value == 3


def test_a_compressed_name_is_not_trainable_and_says_how_to_build_it():
    with pytest.raises(ConfigError, match="make compress VARIANT=v0 METHOD=qat"):
        split_variant("v0@qat")


def test_untrained_or_compressed_parent_and_too_many_student_layers(parent, tmp_path):
    from training.compress.run import check_inputs

    with pytest.raises(CompressError, match=r"parent v2 is not trained: .*make train VARIANT=v2"):
        check_inputs("v2", "qat", tmp_path / "artifacts", tmp_path / "results")
    with pytest.raises(CompressError, match="itself compressed"):
        check_inputs("v0@qat", "magnitude-50", parent / "artifacts", parent / "results")
    with pytest.raises(CompressError, match="unknown variant 'v99'"):
        check_inputs("v99", "qat", parent / "artifacts", parent / "results")
    with pytest.raises(CompressError, match=r"student must have 1 to 1 layers \(the parent v0 has 2\)"):
        check_inputs("v0", "distill-2", parent / "artifacts", parent / "results")


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "training.compress", "--variant", "v0", "--method", "magnitude-100",
                        "--check"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "(0, 100)" in p.stderr


# -- the methods ------------------------------------------------------------------------------


def test_magnitude_50_sparsity_counted_from_the_saved_safetensors(parent):
    res = _compress(parent, "magnitude-50")
    _check_result(res, parent)
    w = _weights(Path(res["artifact"]))
    prunable = [k for k in w if k.startswith("model.layers.") and k.endswith(".weight") and w[k].ndim == 2]
    assert prunable  # attention Wqkv/Wo and FFN Wi/Wo of every layer
    total = sum(w[k].size for k in prunable)
    zeros = sum(int((w[k] == 0).sum()) for k in prunable)
    assert abs(zeros / total - 0.50) <= 0.01
    assert abs(res["sparsity"] - zeros / total) < 1e-9
    assert res["params"] == res["parent_figures"]["params"]  # same shapes: zeros, not removed weights
    assert res["flops_per_request"] == res["parent_figures"]["flops_per_request"]  # dense kernels
    assert res["weights_gzip_mb"] < res["parent_figures"]["weights_gzip_mb"]  # only the packed file shrinks
    assert "do not fall" in res["serving_note"]


def test_structured_25_has_fewer_params_and_its_onnx_export_passes_parity(parent):
    from transformers import AutoModelForSequenceClassification

    from serving.export import run_export

    res = _compress(parent, "structured-25")
    _check_result(res, parent)
    assert res["params"] < res["parent_figures"]["params"]
    assert res["flops_per_request"] < res["parent_figures"]["flops_per_request"]
    assert res["details"]["ffn_neurons_after"] == 48 and res["details"]["heads_removed"] == 0
    m = AutoModelForSequenceClassification.from_pretrained(res["artifact"])
    assert m.config.intermediate_size == 48 and sum(p.numel() for p in m.parameters()) == res["params"]
    rec = run_export("v0@structured-25", "onnx", artifacts_dir=parent / "artifacts", meter="estimate",
                     options={"exporter": "torchscript"}, parity_n=16, max_length=64)
    assert rec.status == "ok" and rec.parity["passed"]


def test_ptq_dynamic_is_quantised_by_the_pytorch_engine_and_refused_for_onnx(parent):
    from serving.export import ExportUnavailable, run_export
    from serving.runners import TorchRunner

    res = _compress(parent, "ptq-dynamic")
    _check_result(res, parent)
    assert res["size_mb"] < res["parent_figures"]["size_mb"]  # int8 Linear weights in memory
    runner = TorchRunner(res["artifact"], max_length=64)
    kinds = {type(mod).__module__ for mod in runner.model.modules()}
    assert any(k.startswith("torch.ao.nn.quantized") for k in kinds)
    assert runner.describe()["compression"] == "ptq-dynamic"
    logits, labels = runner.predict(["int main(void) { return 0; }"])
    assert logits.shape == (1, 2)
    with pytest.raises(ExportUnavailable, match="pytorch engine"):
        run_export("v0@ptq-dynamic", "onnx", artifacts_dir=parent / "artifacts", meter="estimate")


def test_qat_exports_a_static_qdq_model_that_onnxruntime_runs(parent):
    import onnx

    from serving.export import run_export

    res = _compress(parent, "qat")
    _check_result(res, parent)
    assert res["details"]["fake_quantized_layers"] >= 8
    cj = json.loads((Path(res["artifact"]) / "compression.json").read_text())
    assert cj["method_family"] == "qat" and cj["qat"]["activation_ranges"]
    assert not any("act_fq" in k for k in _weights(Path(res["artifact"])))  # plain float weights saved
    run_export("v0@qat", "onnx", artifacts_dir=parent / "artifacts", meter="estimate",
               options={"exporter": "torchscript"}, check_parity=False, max_length=64)
    rec = run_export("v0@qat", "onnx-int8", artifacts_dir=parent / "artifacts", meter="estimate",
                     parity_n=16, max_length=64, check_parity=False)
    assert rec.status == "ok" and "quantize_static" in rec.details["method"]
    g = onnx.load(str(Path(rec.out_dir) / "model.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in g.graph.node) >= 8
    from serving.runners import OnnxRunner

    logits, _ = OnnxRunner(Path(rec.out_dir) / "model.onnx", tokenizer_dir=rec.out_dir, max_length=64).predict(
        ["int f(int a) { return a * 2; }", "void g(char *s) { strcpy(buf, s); }"])
    assert logits.shape == (2, 2) and np.isfinite(logits).all()


def test_distill_1_trains_a_one_layer_student(parent):
    from transformers import AutoModelForSequenceClassification

    res = _compress(parent, "distill-1")
    _check_result(res, parent)
    assert res["layers"] == 1 and res["parent_figures"]["layers"] == 2
    assert res["params"] < res["parent_figures"]["params"]
    assert res["details"]["finetune"]["steps"] == 2
    m = AutoModelForSequenceClassification.from_pretrained(res["artifact"])
    assert m.config.num_hidden_layers == 1


def test_a_failed_compression_leaves_a_failed_result_and_no_artifact(parent, monkeypatch):
    import training.compress.magnitude as magnitude

    def boom(model, spec, ctx):
        raise KeyboardInterrupt("interrupted by signal 15")

    monkeypatch.setattr(magnitude, "compress", boom)
    with pytest.raises(KeyboardInterrupt):
        _compress(parent, "magnitude-30")
    res = json.loads((parent / "results" / "compress" / "v0@magnitude-30" / "result.json").read_text())
    assert res["status"] == "failed" and res["failure_reason"] == "interrupted"
    assert res["energy_kwh"]["evaluate_parent"] is not None  # what it measured is kept
    assert not (parent / "artifacts" / "v0@magnitude-30").exists()


# -- analysis ---------------------------------------------------------------------------------


def test_break_even_on_known_inputs():
    from analysis.compression import break_even

    comp = {"v0@structured-25": {"parent": "v0", "method_family": "structured", "energy_kwh.compress": 1e-3}}

    def entry(v, wh, ci):
        return {"engine": "onnxruntime", "variant": v, "format": "onnx", "load": "closed-u4",
                "metrics": {"energy_per_1k_wh.gross": {"mean": wh, "ci95": ci, "n": 3}}}

    serve = {"a": entry("v0", 0.5, [0.49, 0.51]), "b": entry("v0@structured-25", 0.3, [0.29, 0.31])}
    (row,) = break_even(comp, serve)
    assert row["requests"] == pytest.approx(5000.0)  # 1 Wh ÷ 0.2 Wh per 1k
    assert row["significant"]
    serve["b"] = entry("v0@structured-25", 0.6, None)
    (row,) = break_even(comp, serve)
    assert row["requests"] is None and not row["significant"]


def test_report_has_the_compression_section(parent):
    from analysis.report import build_report

    if not (parent / "results" / "compress" / "v0@magnitude-50" / "result.json").exists():
        _compress(parent, "magnitude-50")
    paths = build_report(parent / "results")
    html = paths["html"].read_text()
    start = html.index('<section id="compression">')
    body = html[start:html.index("</section>", start)]
    assert "v0@magnitude-50" in body and "Break-even" in body and "dense kernels" in body
    agg = json.loads((parent / "results" / "aggregated_metrics.json").read_text())
    assert agg["compress"]["v0@magnitude-50"]["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_compressed_names_survive_the_aggregate_canonical_form():
    from analysis.aggregate import canonical_variant

    assert canonical_variant("v0_baseline@qat") == "v0@qat"
    assert canonical_variant("v2_lora_peft+v8@magnitude-50") == "v2+v8@magnitude-50"


class CompressingFakeTrainer:
    """The sweep tests' ``FakeTrainer`` (a named stand-in for ``training.train`` / ``loadtest.run``)
    plus ``training.compress``: writes the compression result.json where the real CLI would
    (``<results-dir>/compress/<variant>@<method>/``), failed for the methods in ``fail``."""

    def __init__(self, fail: tuple[str, ...] = ()):
        from tests.analysis.test_sweep import FakeTrainer

        self.inner, self.fail, self.calls = FakeTrainer(), fail, []

    def __call__(self, cmd, log_path, power_csv):
        self.calls.append(cmd)
        if cmd[2] != "training.compress":
            return self.inner(cmd, log_path, power_csv)
        arg = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--")}
        name = f"{arg['--variant']}@{arg['--method']}"
        d = Path(arg["--results-dir"]) / "compress" / name
        d.mkdir(parents=True)
        log_path.write_text("fake compressor\n")
        if arg["--method"] in self.fail:
            (d / "result.json").write_text(json.dumps({"status": "failed", "variant": name,
                                                       "failure_reason": "fake: pruning diverged"}))
            return 1
        (d / "result.json").write_text(json.dumps({
            "status": "ok", "variant": name, "energy_kwh": {"compress": 0.25, "evaluate": 0.01},
            "size_mb": 1.5, "sparsity": 0.5, "accuracy": 0.55, "f1": 0.4, "mcc": 0.05}))
        return 0


def _sweep_space(compress: list[str]):
    from analysis.sweep import SearchSpace

    return SearchSpace(base_variant="v0", overlays=["v1", "v2"], max_overlays=1,
                       set={"data.tiny_max_length": [64, 128], "training.tiny_learning_rate": [1e-4, 5e-4]},
                       max_steps=2, compress=compress, source="test")


def test_sweep_compress_draw_is_last_and_serves_the_compressed_variant(tmp_path):
    import optuna

    from analysis import sweep

    base, with_c = _sweep_space([]), _sweep_space(["none", "structured-25", "magnitude-50"])
    # A one-stream sampler (Optuna's RandomSampler): drawn last, "compress" leaves the trial's other
    # draws as they were (later trials' streams do move on). The sweep's per-(seed, trial, name)
    # sampler: no trial's other draws move at all.
    for make, n in ((lambda: optuna.samplers.RandomSampler(seed=3), 1), (lambda: sweep.make_sampler("random", 3), 12)):
        plain_st, comp_st = (optuna.create_study(directions=["minimize", "maximize"], sampler=make())
                             for _ in range(2))
        plain = [sweep.suggest(plain_st.ask(), base, 3) for _ in range(n)]
        comp = [sweep.suggest(comp_st.ask(), with_c, 3) for _ in range(n)]
        for a, b in zip(plain, comp, strict=True):  # the compression draw never shifts the others
            assert (a.variant, a.set) == (b.variant, b.set) and a.compress is None
            assert b.compress in (None, "structured-25", "magnitude-50")
            if b.compress is None:  # ids of trials without compression are unchanged
                assert a.run_id == b.run_id and b.served_variant == b.variant
            else:
                assert a.run_id != b.run_id
    assert {b.compress for b in comp} == {None, "structured-25", "magnitude-50"}
    s = next(b for b in comp if b.compress)
    assert s.served_variant == f"{s.variant}@{s.compress}"
    cmd = sweep.compress_command(s, tmp_path, python="python", meter="estimate")
    assert cmd == ["python", "-m", "training.compress", "--variant", s.variant, "--method", s.compress,
                   "--results-dir", str(tmp_path), "--artifacts-dir", str(tmp_path / "artifacts"),
                   "--idle-s", "0", "--meter", "estimate"]
    load = sweep.load_command(s, tmp_path, with_c)
    assert load[load.index("--variant") + 1] == s.served_variant
    assert sweep.space_fingerprint(base) != sweep.space_fingerprint(with_c) != \
        sweep.space_fingerprint(_sweep_space(["none", "magnitude-50"]))


def test_sweep_space_file_compress_choices_are_checked(tmp_path):
    from analysis.sweep import DEFAULT_SPACE, SpaceError, load_space

    assert load_space(DEFAULT_SPACE).compress == []  # opt-in: the shipped space does not compress
    f = tmp_path / "space.yaml"
    f.write_text("compress: [none, magnitude-50.0, ptq-dynamic]\n")
    assert load_space(f).compress == ["none", "magnitude-50", "ptq-dynamic"]  # the parser's spelling
    for bad, why in (("[magnitude-120]", r"\(0, 100\)"), ("[gzip]", "unknown compression method 'gzip'"),
                     ("magnitude-50", "must be a list")):
        f.write_text(f"compress: {bad}\n")
        with pytest.raises(SpaceError, match=why) as e:
            load_space(f)
        assert "compress" in str(e.value) and "structured-<pct>" in str(e.value)  # names the allowed values


def _compress_cfg(tmp_path, compress, **kw):
    from analysis.sweep import SweepConfig

    return SweepConfig(space=_sweep_space(compress), n=kw.pop("n", 3), out_dir=tmp_path / "sweep",
                       heartbeat_s=1, poll_s=0.2, **kw)


def test_sweep_trial_compresses_then_serves_the_compressed_model(tmp_path):
    import optuna

    from analysis.sweep import run_worker

    cfg = _compress_cfg(tmp_path, ["magnitude-50"], serve=True)
    runner = CompressingFakeTrainer()
    run_worker(cfg, runner)
    assert [c[2] for c in runner.calls] == ["training.train", "training.compress", "loadtest.run"] * 3
    study = optuna.load_study(study_name=cfg.study_name, storage=cfg.storage)
    assert study.metric_names == ["load.energy_per_1k_wh.server", "pipeline.mcc"]
    for t in study.trials:
        ua = t.user_attrs
        assert t.state.name == "COMPLETE" and t.params["compress"] == "magnitude-50"
        assert ua["compress"] == "magnitude-50" and ua["served_variant"] == f"{ua['variant']}@magnitude-50"
        load = next(c for c in runner.calls if c[2] == "loadtest.run" and ua["run_id"] in c)
        assert load[load.index("--variant") + 1] == ua["served_variant"]
        assert ua["compress.energy_kwh.compress"] == 0.25 and ua["compress.size_mb"] == 1.5
        assert ua["compress.sparsity"] == 0.5 and ua["compress.mcc"] == 0.05 and ua["compress.f1"] == 0.4
        # served energy: the compressed model's load summary; accuracy: the compressed model's
        assert t.values == [ua["load.energy_per_1k_wh.server"], 0.05]
        assert Path(ua["path.compress_result"]).is_file()
    df = pd.read_csv(cfg.out_dir / "aggregate.csv")
    assert set(df["compress"]) == {"magnitude-50"} and (df["compress.size_mb"] == 1.5).all()


def test_sweep_without_serving_judges_training_plus_compression_energy(tmp_path):
    import optuna

    from analysis.sweep import run_worker

    cfg = _compress_cfg(tmp_path, ["none", "magnitude-50"], n=8)
    run_worker(cfg, CompressingFakeTrainer())
    study = optuna.load_study(study_name=cfg.study_name, storage=cfg.storage)
    assert study.metric_names == ["pipeline.energy_kwh", "pipeline.mcc"]
    seen = set()
    for t in study.trials:
        ua, m = t.user_attrs, t.params["compress"]
        seen.add(m)
        if m == "none":
            assert ua["compress"] is None and not any(k.startswith("compress.") for k in ua)
            assert t.values == [ua["train.energy_kwh.training"], ua["train.mcc"]]
        else:
            assert t.values == [pytest.approx(ua["train.energy_kwh.training"] + 0.25), 0.05]
    assert seen == {"none", "magnitude-50"}


def test_sweep_trial_fails_with_the_compression_reason(tmp_path):
    import optuna

    from analysis.sweep import run_worker

    cfg = _compress_cfg(tmp_path, ["magnitude-50"], n=1, max_failed=2, serve=True)
    runner = CompressingFakeTrainer(fail=("magnitude-50",))
    with pytest.raises(Exception, match="2 trials failed"):
        run_worker(cfg, runner)
    assert "loadtest.run" not in [c[2] for c in runner.calls]  # nothing served after a failed compression
    t = optuna.load_study(study_name=cfg.study_name, storage=cfg.storage).trials[0]
    assert t.state.name == "FAIL" and t.user_attrs["failure_reason"] == "fake: pruning diverged"
    done = json.loads((Path(t.user_attrs["run_dir"]) / "done.json").read_text())
    assert done["status"] == "failed" and done["compress_returncode"] == 1
