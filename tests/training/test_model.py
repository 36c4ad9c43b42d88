"""Architecture helpers: layer pruning (counts, reloadable artifacts) and LoRA merging."""

from __future__ import annotations

import pytest
import torch

from training.model import (
    apply_lora,
    build_tiny_model,
    merge_lora,
    prune_layers,
    pruned_layer_count,
    save_artifact,
    train_tokenizer,
)

CODE = ["int main(void) { return 0; }", "void f(char *s) { strcpy(buf, s); }", "/* é ü ß 漢字 */ int x;"]


@pytest.fixture(scope="module")
def tokenizer():
    from training.data import load_split

    return train_tokenizer(load_split("train")["text"].head(200), vocab_size=512, max_length=64)


def _tiny(tokenizer, layers=4, seed=0):
    return build_tiny_model(tokenizer, seed=seed, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64).eval()


def test_pruned_layer_count_scaling_and_limits():
    assert pruned_layer_count(0, 4) == (0, "")
    assert pruned_layer_count(4, 22)[0] == 4  # ModernBERT-base: exact
    assert [pruned_layer_count(n, 4)[0] for n in (4, 8, 12, 16, 20)] == [1, 1, 2, 3, 3]
    n, note = pruned_layer_count(20, 4)
    assert "dropped 3 of 4" in note
    assert pruned_layer_count(2, 4, reference_layers=0) == (2, "dropped 2 of 4 layers")
    with pytest.raises(ValueError, match="would drop all 4"):
        pruned_layer_count(4, 4, reference_layers=0)
    with pytest.raises(ValueError, match="at least one must remain"):
        pruned_layer_count(4, 1)


@pytest.mark.parametrize("side", ["top", "bottom"])
def test_pruned_model_saves_and_reloads_identically(tokenizer, side, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = _tiny(tokenizer)
    types_before = list(model.config.layer_types)
    prune_layers(model, 2, side)
    assert model.config.num_hidden_layers == 2 and len(model.model.layers) == 2
    assert model.config.layer_types == (types_before[:2] if side == "top" else types_before[2:])
    enc = tokenizer(CODE, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**enc).logits
    save_artifact(model, tokenizer, tmp_path / "m")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        after = reloaded(**enc).logits
    torch.testing.assert_close(before, after)


def test_prune_rejects_too_many_layers(tokenizer):
    with pytest.raises(ValueError, match="at most 3"):
        prune_layers(_tiny(tokenizer), 4, "top")
    with pytest.raises(ValueError, match="valid: top, bottom"):
        prune_layers(_tiny(tokenizer), 1, "middle")


def test_lora_merge_gives_a_loadable_artifact_with_the_same_logits(tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = apply_lora(_tiny(tokenizer, layers=2), r=4, alpha=8, dropout=0.0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("classifier" in n for n in trainable)
    assert any(".head." in n for n in trainable), "the random head must train with the adapters"
    assert not any("tok_embeddings" in n for n in trainable)
    # LoRA's B starts at zero; give adapters and head non-trivial values as training would
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    enc = tokenizer(CODE, padding=True, return_tensors="pt")
    with torch.no_grad():
        peft_logits = model(**enc).logits
    merged = merge_lora(model)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    save_artifact(merged, tokenizer, tmp_path / "lora")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "lora").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**enc).logits, peft_logits, atol=1e-5, rtol=1e-4)
