"""LoRA through peft: zero-init, the down matrix's two initialisations (official and peft's),
which parameters train, save/load, scale and merge."""

import json
import math

import pytest
import torch

from ivlite.adapters import load_adapter, read_adapter, save_adapter
from ivlite.config import Config, ConfigError
from ivlite.method.lora import add_lora, lora_config, lora_parameters, merge_lora, \
    set_lora_scale, unmerge_lora
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


# --- the down matrix's initialisation ---------------------------------------------------------

def _modelscope_width_attention():
    """Attention layers at ModelScopeT2V's widths: query 320 and 1280, text context 1024."""
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    return torch.nn.ModuleDict({
        "narrow": Attention(query_dim=320, cross_attention_dim=1024, heads=5, dim_head=64),
        "wide": Attention(query_dim=1280, cross_attention_dim=1024, heads=20, dim_head=64)})


def _lora_matrices(module):
    return {n: p.detach() for n, p in module.named_parameters() if ".lora_" in n}


def test_official_init_draws_the_down_matrix_with_std_one_over_rank():
    for rank in (4, 8):
        layers = _modelscope_width_attention()
        add_lora(layers, lora_config(rank=rank, init="official"))
        mats = _lora_matrices(layers)
        downs = {n: w for n, w in mats.items() if ".lora_A." in n}
        assert len(downs) == 8 and all(w.shape[0] == rank for w in downs.values())
        for name, w in downs.items():  # 4 standard errors of the estimates from numel draws
            n = w.numel()
            assert abs(float(w.std()) * rank - 1) < 4 / math.sqrt(2 * n), (name, float(w.std()))
            assert abs(float(w.mean())) * rank < 4 / math.sqrt(n), name
        assert all(not w.any() for n, w in mats.items() if ".lora_B." in n)


def test_peft_init_draws_the_down_matrix_within_the_kaiming_bound():
    layers = _modelscope_width_attention()
    add_lora(layers, lora_config(rank=4, init="peft"))
    mats = _lora_matrices(layers)
    ratios = []
    for name, w in mats.items():
        if ".lora_B." in name:
            assert not w.any(), name
            continue
        bound = 1 / math.sqrt(w.shape[1])  # kaiming_uniform(a=sqrt(5)) on fan_in = d_in
        assert float(w.abs().max()) <= bound, name
        assert abs(float(w.std()) / (bound / math.sqrt(3)) - 1) < 4 / math.sqrt(w.numel()), name
        ratios.append(0.25 / float(w.std()))
    assert 7 < min(ratios) and max(ratios) < 17  # the official init's spread is 8-16x larger


def test_saved_adapter_config_reproduces_the_init(tmp_path, tiny_model):
    torch.manual_seed(3)
    add_lora(tiny_model.unet, lora_config(init="official"))
    drawn = _lora_matrices(tiny_model.unet)
    save_adapter(tiny_model.unet, tmp_path / "adapter")
    config, _ = read_adapter(tmp_path / "adapter")
    assert config.init_lora_weights == "gaussian"
    fresh = tiny_random_model(seed=0).unet
    torch.manual_seed(3)
    add_lora(fresh, config)
    again = _lora_matrices(fresh)
    assert drawn.keys() == again.keys() and all(torch.equal(drawn[k], again[k]) for k in drawn)
    with pytest.raises(ValueError, match="lora_init='xavier'.*'official' or 'peft'"):
        lora_config(init="xavier")


def test_lora_init_config_field_presets_and_flag(tmp_path, capsys):
    from ivlite.cli import main

    assert Config().lora_init == "official" and Config.preset("paper").lora_init == "official"
    assert Config.preset("modelscope").lora_init == "official"
    assert Config.preset("tiny-random").lora_init == Config.preset("tiny-world").lora_init == "peft"
    with pytest.raises(ConfigError, match=r"^lora_init='xavier' is out of range; allowed: "
                                          r"'official' or 'peft'$"):
        Config(lora_init="xavier").validate()
    assert main(["finetune", "--lora-init", "xavier", "--out-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lora_init='xavier'" in err and "'peft'" in err
    assert not (tmp_path / "x").exists()


def test_finetune_uses_the_configured_init_and_resumes_runs_without_the_field(tmp_path):
    from ivlite.trainer import finetune

    fast = dict(num_frames=4, segments=2, ddim_steps=5, prompts=["a red circle moving left"],
                max_steps=1)
    official = finetune(Config.preset("tiny-random", out_dir=str(tmp_path / "official"),
                                      lora_init="official", **fast), progress=False)
    config, _ = read_adapter(official.adapter_dir)
    assert config.init_lora_weights == "gaussian"
    run = finetune(Config.preset("tiny-random", out_dir=str(tmp_path / "old"), **fast),
                   progress=False).out_dir
    assert read_adapter(run / "adapter")[0].init_lora_weights is True  # peft's default
    record = json.loads((run / "config.json").read_text())
    del record["lora_init"]  # a run written before the field existed drew A with peft's init
    (run / "config.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="lora_init='official' differs .* lora_init='peft'"):
        finetune(Config.preset("tiny-random", out_dir=str(run), resume=True, lora_init="official",
                               **{**fast, "max_steps": 2}), progress=False)
    resumed = finetune(Config.preset("tiny-random", out_dir=str(run), resume=True,
                                     **{**fast, "max_steps": 2}), progress=False)
    assert resumed.steps == 2
