"""LoRA through peft: zero-init, which parameters train, save/load, scale and merge."""

import json

import pytest
import torch

from ivlite.lora import add_lora, load_adapter, lora_config, lora_parameters, merge_lora, \
    save_adapter, set_lora_scale, unmerge_lora
from ivlite.models import tiny_random_model


def _out(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 4, 4, generator=g)
    e = torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        return unet(x, 500, encoder_hidden_states=e).sample


def _randomise(params, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_zero_init_lora_leaves_output_unchanged(tiny_model):
    unet = tiny_model.unet.eval()
    before = _out(unet)
    params = add_lora(unet)
    torch.testing.assert_close(_out(unet), before, rtol=0, atol=0)
    ups = [p for n, p in unet.named_parameters() if "lora_B" in n]
    assert ups and all(float(p.detach().abs().sum()) == 0 for p in ups)
    assert len(params) == len(lora_parameters(unet))


def test_lora_sits_on_spatial_cross_and_temporal_attention(tiny_model):
    unet = tiny_model.unet
    add_lora(unet)
    names = {n.rsplit(".lora_", 1)[0] for n, _ in unet.named_parameters() if ".lora_A." in n}
    attn = {n for n, m in unet.named_modules() if n.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v")
            or n.endswith("to_out.0")}
    attn = {n.replace(".base_layer", "") for n in attn if "lora" not in n}
    assert names == attn
    assert any("temp_attentions" in n for n in names)  # temporal self-attention
    assert any("attn2" in n and "attentions" in n for n in names)  # spatial cross-attention
    assert all(p.shape[0] == 4 or p.shape[1] == 4 for p in lora_parameters(unet))  # rank 4


def test_only_lora_parameters_receive_gradients(tiny_model):
    unet = tiny_model.unet
    params = add_lora(unet)
    _randomise([p for n, p in unet.named_parameters() if "lora_B" in n])
    g = torch.Generator().manual_seed(0)
    unet(torch.randn(1, 4, 8, 4, 4, generator=g), 500,
         encoder_hidden_states=torch.randn(1, 77, 32, generator=g)).sample.square().sum().backward()
    lora_ids = {id(p) for p in params}
    for name, p in unet.named_parameters():
        if id(p) in lora_ids:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name


def test_adapter_round_trip_scale_and_merge(tmp_path, tiny_model):
    unet = tiny_model.unet.eval()
    base = _out(unet)
    params = add_lora(unet)
    _randomise(params)
    tuned = _out(unet)
    assert not torch.allclose(tuned, base)
    save_adapter(unet, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 4
    assert config["target_modules"] == sorted(["to_k", "to_out.0", "to_q", "to_v"])

    fresh = tiny_random_model(seed=0).unet.eval()
    load_adapter(fresh, tmp_path / "adapter")
    torch.testing.assert_close(_out(fresh), tuned)
    set_lora_scale(fresh, 0.0)
    torch.testing.assert_close(_out(fresh), base, rtol=1e-5, atol=1e-6)
    set_lora_scale(fresh, 1.0)
    merge_lora(fresh)
    torch.testing.assert_close(_out(fresh), tuned, rtol=1e-4, atol=1e-5)
    unmerge_lora(fresh)
    torch.testing.assert_close(_out(fresh), tuned, rtol=1e-4, atol=1e-5)


def test_wrong_adapter_is_rejected(tmp_path, tiny_model):
    unet = tiny_model.unet
    add_lora(unet, lora_config(rank=8))
    save_adapter(unet, tmp_path / "rank8")
    other = tiny_random_model().unet
    add_lora(other, lora_config(rank=4))
    with pytest.raises(ValueError, match="does not fit"):
        load_adapter(other, tmp_path / "rank8")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(other, tmp_path / "missing")
    (tmp_path / "rank8" / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt"):
        load_adapter(tiny_random_model().unet, tmp_path / "rank8")


def test_unknown_target_modules(tiny_model):
    with pytest.raises(ValueError, match="lora_targets"):
        add_lora(tiny_model.unet, lora_config(targets=["no_such_layer"]))
