"""Config resolution for every variant, its validation messages, and the CPU/GPU refusal rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import (
    BASE_FILE,
    Config,
    ConfigError,
    discover_variants,
    parse_set,
    resolve,
    split_variant,
)
from training.runtime import POWER_OPT_IN_ENV, Hardware, Refused, plan

VARIANTS = discover_variants()
CPU_BOX = Hardware(cuda_devices=0, bitsandbytes=False, flash_attn=False, nvml=False, cxx_compiler=True)
GPU_BOX = Hardware(cuda_devices=1, bitsandbytes=True, flash_attn=True, nvml=True, cxx_compiler=True)

# What each variant changes relative to the baseline (dotted key → value after resolution).
EXPECTED_CHANGES = {
    "v0": {},
    "v1": {"training.gradient_checkpointing": True},
    "v2": {"peft.enabled": True},
    "v3": {"quantization.mode": "bnb_4bit", "peft.enabled": True},
    "v4": {"data.padding": "longest", "data.group_by_length": True},
    "v5": {"power.limit_w": 100.0},
    "v6": {"training.optim": "adamw_torch_fused"},
    "v7": {"training.precision": "half"},
    "v8": {"data.max_length": 512, "data.tiny_max_length": 64},
    "v9": {"inference.engine": "onnxruntime"},
    "v10": {"training.dataloader_pin_memory": True, "training.dataloader_num_workers": 2},
    "v11": {"training.torch_compile": True},
    "v12": {"model.attn_implementation": "sdpa"},
}
PRUNE = {13 + 2 * i + j: (n, side) for i, n in enumerate((4, 8, 12, 16, 20)) for j, side in enumerate(("top", "bottom"))}
for num, (n, side) in PRUNE.items():
    EXPECTED_CHANGES[f"v{num}"] = {"pruning.layers": n, "pruning.side": side}

# Variants that must refuse on a CPU-only box (everything else runs there).
CPU_REFUSED = {"v5"}


def _get(cfg: Config, dotted: str):
    cur = cfg
    for part in dotted.split("."):
        cur = getattr(cur, part)
    return cur


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_every_variant_file_is_covered():
    assert set(VARIANTS) == set(EXPECTED_CHANGES), "a variant file was added or removed: update EXPECTED_CHANGES"


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGES, key=lambda n: int(n[1:])))
def test_variant_resolves_to_exactly_its_changes(name):
    base = _flat(resolve("v0").to_dict())
    cfg = resolve(name)
    got = _flat(cfg.to_dict())
    changed = {k: v for k, v in got.items() if base[k] != v}
    expected = EXPECTED_CHANGES[name]
    assert changed == {k: v for k, v in expected.items() if base[k] != v}
    assert all(got[k] == v for k, v in expected.items())
    assert VARIANTS[name].description, f"{name} needs a description for `make variants`"


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGES, key=lambda n: int(n[1:])))
def test_variant_runs_or_refuses_on_cpu(name):
    cfg = resolve(name)
    if name in CPU_REFUSED:
        with pytest.raises(Refused, match="refused:"):
            plan(cfg, CPU_BOX, env={})
    else:
        p = plan(cfg, CPU_BOX, env={})
        assert p.device == "cpu"


def test_seed_aliases_and_prune_names_resolve():
    assert split_variant("v0_baseline") == ["v0"]
    assert split_variant("v2_lora_peft+v7_f16+v8_sequence_length_trimming") == ["v2", "v7", "v8"]
    assert split_variant("v13_layer_pruning_4_top") == ["v13"]
    assert split_variant("prune-8-bottom") == ["v16"]
    assert split_variant("v5_power_limit_100W") == ["v5"]


def test_combination_applies_overlays_in_order():
    cfg = resolve("v2+v7+v8")
    assert cfg.peft.enabled and cfg.training.precision == "half" and cfg.max_length == 64
    # later overlays win: v14 (4 bottom) after v13 (4 top)
    assert resolve("v13+v14").pruning.side == "bottom"
    assert resolve("v14+v13").pruning.side == "top"


def test_tiny_and_real_lengths_and_learning_rates():
    cfg = resolve("v8")
    assert cfg.max_length == 64 and cfg.learning_rate == cfg.training.tiny_learning_rate
    real = resolve("v8", ["model.name=/some/checkpoint"])
    assert real.max_length == 512 and real.learning_rate == 5e-5
    assert resolve("v0", ["model.name=x"]).max_length == 2048


def test_unknown_variant_lists_valid_ones():
    with pytest.raises(ConfigError) as e:
        resolve("v99")
    msg = str(e.value)
    assert "unknown variant 'v99'" in msg and "v0, v1, v2" in msg and "v2_lora_peft" in msg


def test_empty_combination_part_is_rejected():
    with pytest.raises(ConfigError, match="empty part"):
        resolve("v2++v7")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("training.optim=sgdx", "allowed values: one of 'adamw_torch'"),
        ("training.lr=1", "unknown key 'training.lr'; allowed keys in training: epochs"),
        ("trainig.optim=sgd", "unknown section 'trainig'; allowed sections: data, model"),
        ("data.max_length=long", "data.max_length: 'long' has the wrong type; expected int"),
        ("peft.enabled=yes please", "expected bool"),
        ("model.attn_implementation=flash", "'eager', 'sdpa', 'flash_attention_2'"),
        ("data.fractions=[0.5, 0.5]", "fractions must be three"),
        ("training.warmup_ratio=1.5", "warmup_ratio must be in [0, 1)"),
        ("runtime.gpus=0", "runtime.gpus must be ≥ 1"),
        ("model.tiny.depth=3", "allowed keys in model.tiny: hidden_size"),
    ],
)
def test_set_overrides_are_validated(item, expected):
    with pytest.raises(ConfigError) as e:
        resolve("v0", [item])
    assert expected in str(e.value)
    assert "--set" in str(e.value) or "variant v0" in str(e.value)


def test_set_values_are_parsed_as_yaml():
    assert parse_set("training.max_steps=3") == ("training.max_steps", 3)
    assert parse_set("peft.target_modules=[Wqkv]") == ("peft.target_modules", ["Wqkv"])
    assert parse_set("power.limit_w=null") == ("power.limit_w", None)
    cfg = resolve("v0", ["training.learning_rate=1e-4", "power.limit_w=150", "data.path=/x.csv"])
    assert cfg.training.learning_rate == 1e-4 and cfg.power.limit_w == 150.0 and cfg.data.path == "/x.csv"
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_set("training.max_steps")


def test_bad_overlay_file_is_named(tmp_path: Path):
    (tmp_path / "base.yaml").write_text(BASE_FILE.read_text())
    (tmp_path / "v0.yaml").write_text("description: ok\n")
    bad = tmp_path / "v1.yaml"
    bad.write_text("description: broken\ntraining:\n  optimiser: adamw_torch\n")
    with pytest.raises(ConfigError) as e:
        resolve("v1", base_file=tmp_path / "base.yaml", variants_dir=tmp_path)
    assert str(bad) in str(e.value) and "training.optimiser" in str(e.value) and "optim" in str(e.value)
    bad.write_text("training: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve("v1", base_file=tmp_path / "base.yaml", variants_dir=tmp_path)


def test_dataclass_defaults_match_base_yaml():
    # base.yaml is the documented source of truth; the dataclass defaults must not drift from it
    assert resolve("v0").to_dict() == Config().to_dict()


# -- refusals and CPU substitutes -----------------------------------------------------------


def test_power_limit_refuses_without_gpu_and_without_opt_in():
    cfg = resolve("v5")
    with pytest.raises(Refused, match="needs an NVIDIA GPU"):
        plan(cfg, CPU_BOX, env={})
    with pytest.raises(Refused, match="opt in"):
        plan(cfg, GPU_BOX, env={})
    assert plan(cfg, GPU_BOX, env={POWER_OPT_IN_ENV: "1"}).power_limit_w == 100.0
    assert plan(resolve("v5", ["power.allow_change=true"]), GPU_BOX, env={}).power_limit_w == 100.0


def test_quantization_cpu_substitute_and_refusals():
    p = plan(resolve("v3"), CPU_BOX, env={})
    assert p.eval_quantization == "dynamic_int8" and p.bnb_quantization == "none"
    assert any("CPU substitute" in n for n in p.notes)
    with pytest.raises(Refused, match="cpu_fallback=refuse"):
        plan(resolve("v3", ["quantization.cpu_fallback=refuse"]), CPU_BOX, env={})
    with pytest.raises(Refused, match="onnx-int8"):
        plan(resolve("v3+v9"), CPU_BOX, env={})
    assert plan(resolve("v3"), GPU_BOX, env={}).bnb_quantization == "bnb_4bit"
    with pytest.raises(Refused, match="bitsandbytes"):
        plan(resolve("v3"), Hardware(cuda_devices=1), env={})
    with pytest.raises(Refused, match="QLoRA"):
        plan(resolve("v3", ["peft.enabled=false"]), GPU_BOX, env={})


def test_precision_rules():
    assert plan(resolve("v7"), CPU_BOX, env={}).precision == "bf16"
    assert plan(resolve("v7"), GPU_BOX, env={}).precision == "fp16"
    with pytest.raises(Refused, match="fp16 needs CUDA"):
        plan(resolve("v0", ["training.precision=fp16"]), CPU_BOX, env={})


def test_gpu_only_knobs_refuse_on_cpu():
    with pytest.raises(Refused, match="flash_attn"):
        plan(resolve("v12", ["model.attn_implementation=flash_attention_2"]), CPU_BOX, env={})
    with pytest.raises(Refused, match="adamw_8bit needs bitsandbytes"):
        plan(resolve("v6", ["training.optim=adamw_8bit"]), CPU_BOX, env={})
    with pytest.raises(Refused, match="GPUS=2 needs 2 CUDA devices"):
        plan(resolve("v0", ["runtime.gpus=2"]), CPU_BOX, env={})
    with pytest.raises(Refused, match="C\\+\\+ compiler"):
        plan(resolve("v11"), Hardware(), env={})
    with pytest.raises(Refused, match="no CUDA device"):
        plan(resolve("v0", ["runtime.device=cuda"]), CPU_BOX, env={})


def test_refusal_lists_every_reason_at_once():
    cfg = resolve("v5", ["training.precision=fp16", "runtime.gpus=4"])
    with pytest.raises(Refused) as e:
        plan(cfg, CPU_BOX, env={})
    msg = str(e.value)
    assert "power.limit_w" in msg and "fp16" in msg and "GPUS=4" in msg
