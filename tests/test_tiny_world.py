"""The tiny world's text-to-video model: training scripts, the asset format, loading, the demo."""

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tools.tiny_world import train_t2v, train_vae
from ivlite.world.assets import ASSET_ROOT, load_weights, save_weights, verify_manifest, \
    write_manifest
from ivlite.world.tiny_models import TEXT_CONFIG, TOKEN_TABLE, UNET_CONFIG, VAE_CONFIG, \
    build_text_encoder, build_unet, build_vae, load_tiny_world

SHIPPED = ASSET_ROOT / "tiny_world"


def _write_world(folder, seed=0):
    """A tiny-world folder in the shipped layout, from randomly initialised components."""
    torch.manual_seed(seed)
    for name, module, config, tables in (
            ("vae", build_vae(), VAE_CONFIG, ()), ("unet", build_unet(), UNET_CONFIG, ()),
            ("text_encoder", build_text_encoder(), TEXT_CONFIG, (TOKEN_TABLE,))):
        save_weights(module.state_dict(), folder / name / "model.safetensors", token_tables=tables)
        (folder / name / "config.json").write_text(json.dumps({"model": config}))
    write_manifest(folder)
    return folder


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    return _write_world(tmp_path_factory.mktemp("world"))


def test_trimmed_token_table_keeps_the_worlds_prompts_exact(tmp_path):
    text = build_text_encoder().eval()
    save_weights(text.state_dict(), tmp_path / "t.safetensors", token_tables=(TOKEN_TABLE,),
                 dtype=torch.float32)
    stored = load_file(tmp_path / "t.safetensors")
    assert stored[[k for k in stored if k.endswith(".rows")][0]].shape[0] < 40  # not 49,408 rows
    again = build_text_encoder().eval()
    again.load_state_dict(load_weights(tmp_path / "t.safetensors"))
    from ivlite.tokenizer import clip_tokenizer

    ids = clip_tokenizer()(["a red circle moving left on a striped background", ""],
                           padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(again(ids)[0], text(ids)[0])


def test_world_folder_loads_offline_and_checks_checksums(world_dir, tmp_path):
    model = load_tiny_world(world_dir)
    assert model.vae_scale_factor == 4 and model.latent_shape(1, 16, 32, 32) == (1, 4, 16, 8, 8)
    broken = shutil.copytree(world_dir, tmp_path / "broken")
    path = broken / "unet" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its checksum"):
        load_tiny_world(broken)
    (broken / "vae" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="vae/model.safetensors"):
        load_tiny_world(broken)


def test_training_scripts_run_resume_and_export(tmp_path):
    vae_args = ["--steps", "4", "--clips", "8", "--batch", "4", "--log-every", "1",
                "--save-every", "2", "--held-out-clips", "2"]
    train_vae.main(["--out", str(tmp_path / "vae")] + vae_args)
    train_vae.main(["--out", str(tmp_path / "vae2"), *vae_args[:1], "2", *vae_args[2:]])
    train_vae.main(["--out", str(tmp_path / "vae2"), "--resume"] + vae_args)
    a = load_file(tmp_path / "vae" / "export" / "model.safetensors")
    b = load_file(tmp_path / "vae2" / "export" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "vae" / "export" / "config.json").read_text())
    assert config["model"]["scaling_factor"] > 0 and "held_out_psnr_db" in config["metrics"]

    t2v_args = ["--vae", str(tmp_path / "vae" / "export"), "--image-steps", "2",
                "--video-steps", "2", "--clips", "8", "--image-batch", "4", "--batch", "2",
                "--eval-every", "2", "--eval-samples", "1", "--log-every", "1", "--save-every", "1"]
    train_t2v.main(["--out", str(tmp_path / "t2v")] + t2v_args)
    log = [json.loads(l) for l in (tmp_path / "t2v" / "log.jsonl").read_text().splitlines()]
    assert [l["stage"] for l in log] == ["image", "image", "video", "video"]
    assert "all_ok" in log[-1]["oracle"]
    for part in ("unet", "text_encoder"):
        assert (tmp_path / "t2v" / "export" / part / "model.safetensors").is_file()

    # --temporal-lr-scale trains the temporal layers in a group of their own, at scale x lr
    train_t2v.main(["--out", str(tmp_path / "t2v_lr")] + t2v_args + ["--temporal-lr-scale", "3",
                                                                     "--signal-free-share", "0.5"])
    # v prediction on a zero-terminal-SNR schedule trains and evaluates too
    train_t2v.main(["--out", str(tmp_path / "t2v_v")] + t2v_args + ["--schedule", "zero-snr-v",
                                                                    "--snr-floor", "1"])
    # its export carries the schedule, and the world loads with it
    export = tmp_path / "t2v_v" / "export"
    world = shutil.copytree(tmp_path / "vae" / "export", tmp_path / "world_v" / "vae")
    for part in ("unet", "text_encoder", "scheduler"):
        shutil.copytree(export / part, world.parent / part)
    write_manifest(world.parent)
    sched = load_tiny_world(world.parent).scheduler
    assert sched.config.prediction_type == "v_prediction" and sched.alphas_cumprod[-1] == 0
    # the shipped world (run Q2) was trained so, and samples on that schedule
    shipped = load_tiny_world(SHIPPED).scheduler
    assert shipped.config.prediction_type == "v_prediction" and shipped.alphas_cumprod[-1] == 0
    assert not (tmp_path / "t2v" / "export" / "scheduler").exists()
    assert all(math.isfinite(l["loss"]) for l in map(json.loads, (
        tmp_path / "t2v_v" / "log.jsonl").read_text().splitlines()))
    groups = json.loads((tmp_path / "t2v_lr" / "state" / "state.json").read_text()
                        )["optimizer"]["param_groups"]
    assert [g["scale"] for g in groups] == [1.0, 3.0]
    assert groups[1]["lr"] == pytest.approx(3 * groups[0]["lr"])
    assert len(groups[1]["params"]) == len(train_t2v.temporal_parameters(build_unet()))


def _small_demo(world_dir, **kwargs):
    """run_demo's keyword arguments for a demo of seconds: 4 DDIM steps, one clip per split, a
    fresh model (the demo adds its LoRA to the model in place)."""
    from ivlite.config import Config
    from ivlite.rewards import ClipReward
    from ivlite.world.data import world_clips
    from ivlite.world.reward_model import build_tiny_hps, tiny_hps_tokenizer

    torch.manual_seed(0)  # the tiny HPS is built at random
    model = load_tiny_world(world_dir)
    return dict(per_split=1, seeds=1, gifs_per_split=1, model=model,
                reward=ClipReward(build_tiny_hps(), tiny_hps_tokenizer()),
                config=Config.preset("tiny-world", ddim_steps=4, save_every=1),
                clips=world_clips(model, clips=4), **kwargs)


def test_demo_writes_every_file(world_dir, tmp_path):
    from PIL import Image

    from ivlite.world.demo import TRAIN_REWARD, demo_target, plot_rewards, read_log, run_demo, \
        summary_table

    metrics = run_demo(tmp_path / "demo", steps=2, **_small_demo(world_dir, progress=False))
    out = tmp_path / "demo"
    assert set(metrics["splits"]) == {"in_domain", "held_out", "out_of_domain"}
    for split in metrics["splits"]:
        for when in ("before", "after"):
            gif = Image.open(out / "videos" / split / f"0_{when}.gif")
            assert gif.size == (256, 256) and gif.n_frames == 16  # 32x32 frames enlarged 8x
            assert set(metrics["splits"][split][when]) >= {"proxy_reward", "oracle_score",
                                                           "temporal_consistency"}
    assert (out / "reward_curve.png").stat().st_size > 1000
    with Image.open(out / "before_after.png") as figure:  # 3 splits x (before, after) rows
        assert figure.size[0] > 600 and figure.size[1] > 450
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    written = json.loads((out / "metrics.json").read_text())
    assert written["steps"] == 2 and written["target"] == demo_target(metrics)
    assert set(written["phase_seconds"]) == {"load", "score_before", "finetune", "score_after",
                                             "write"}
    table = summary_table(metrics)
    assert "| in_domain |" in table and "| proxy reward (mean over 4 frames) |" in table
    fig = plot_rewards(read_log(out / "run" / "log.jsonl"), tmp_path / "curve.png")
    assert fig.axes[0].get_ylabel().replace("\n", " ") == TRAIN_REWARD.format(s=4)


def test_an_interrupted_demo_continues_where_it_stopped(world_dir, tmp_path, monkeypatch,
                                                        capsys):
    """Ctrl-C (KeyboardInterrupt) in the base model's scoring, in the fine-tuning, in the
    fine-tuned model's scoring: each rerun of the same command keeps the base model's scores and
    the checkpoints, scores the fine-tuned model afresh, and the end result is an uninterrupted
    run's, to the last digit."""
    import ivlite.trainer as trainer
    import ivlite.world.demo as demo
    from ivlite.cli import main

    straight = demo.run_demo(tmp_path / "straight", steps=3,
                             **_small_demo(world_dir, progress=False))

    real_run, real_score, real_step = demo.run_demo, demo.score_split, trainer._train_step
    monkeypatch.setattr(demo, "run_demo", lambda out, steps: real_run(
        out, steps=steps, **_small_demo(world_dir)))
    scored, stop = [], {}

    def score_split(model, reward, prompts, **kw):
        scored.append(prompts[0])
        if stop.get("score") == len(scored):
            raise KeyboardInterrupt
        return real_score(model, reward, prompts, **kw)

    def train_step(cfg, step, *args, **kwargs):
        if stop.get("step") == step:  # step 0 computes step 1
            raise KeyboardInterrupt
        return real_step(cfg, step, *args, **kwargs)

    monkeypatch.setattr(demo, "score_split", score_split)
    monkeypatch.setattr(trainer, "_train_step", train_step)
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--steps", "3"]

    stop["score"] = 2  # the second split of the base model
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"interrupted; what is done is saved in {out}: run `ivlite demo --out {out} " \
           f"--steps 3` to continue where it stopped" in err
    assert [p.stem for p in (out / "before").iterdir()] == ["in_domain"]

    scored.clear()
    stop.update(score=None, step=2)  # after steps 1 and 2 were saved
    assert main(argv) == 130
    assert "resuming the interrupted demo" in capsys.readouterr().err
    assert len(scored) == 2  # in-domain was read back
    assert [line["step"] for line in read_log_of(out)] == [1, 2]

    scored.clear()
    stop.update(step=None, score=2)  # the fine-tuned model's second split
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "2/3 fine-tuning" in err and "train R (TAR, 4 frames)" in err  # labelled bars
    assert "3/3 scoring the fine-tuned model" in err
    assert (out / "after" / "in_domain.safetensors").is_file()

    scored.clear()
    stop.clear()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert len(scored) == 3  # the fine-tuned model is scored again, all of it
    assert "proxy reward (mean over 4 frames)" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 3 and metrics["steps"] == 3
    assert [line["step"] for line in read_log_of(out)] == [1, 2, 3]
    assert metrics["splits"] == json.loads(json.dumps(straight["splits"]))
    a = load_file(out / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

    assert main(argv) == 2  # finished: a rerun refuses, --force starts over
    assert "holds a finished demo; pass --force" in capsys.readouterr().err


def read_log_of(out):
    from ivlite.world.demo import read_log

    return read_log(out / "run" / "log.jsonl")


def test_demo_folder_states(tmp_path):
    from ivlite.config import ConfigError
    from ivlite.world.demo_files import check_out

    out = tmp_path / "demo"
    assert check_out(out, force=False) is False  # new
    (out / "run").mkdir(parents=True)
    assert check_out(out, force=False) is True  # interrupted: continue
    assert check_out(out, force=True) is False  # --force: start over
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"not a demo's folder \(it holds 'notes.txt'\)"):
        check_out(out, force=False)
    (out / "notes.txt").unlink()
    (out / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds a finished demo"):
        check_out(out, force=False)
    with pytest.raises(ConfigError, match="is a file"):
        check_out(out / "metrics.json", force=True)


def _split(before: dict, after: dict) -> dict:
    return {when: {k: {"mean": v, "std": 0.0} for k, v in values.items()}
            for when, values in (("before", before), ("after", after))}


def test_demo_target_checks_each_criterion_on_each_split():
    from ivlite.world.demo import demo_target, target_lines

    base = {"proxy_reward": 0.6, "oracle_score": 0.8, "temporal_consistency": 0.50}
    good = {"proxy_reward": 0.7, "oracle_score": 0.9, "temporal_consistency": 0.49}  # -2%: kept
    metrics = {"splits": {s: _split(base, good) for s in ("in_domain", "held_out")}}
    assert demo_target(metrics)["met"] and target_lines(metrics)[-1] == "target met"
    metrics["splits"]["held_out"] = _split(base, {**good, "temporal_consistency": 0.489})
    checks = demo_target(metrics)
    assert not checks["met"] and checks["consistency_kept"] == {"in_domain": True,
                                                                 "held_out": False}
    assert checks["proxy_up"] == checks["oracle_up"] == {"in_domain": True, "held_out": True}
    lines = target_lines(metrics)
    assert lines[2] == "temporal consistency down by at most 2%: not on held_out"
    metrics["splits"]["in_domain"] = _split(base, {**good, "oracle_score": 0.8})  # equal: not up
    assert demo_target(metrics)["oracle_up"]["in_domain"] is False


@pytest.mark.skipif(not (SHIPPED / "unet" / "model.safetensors").is_file(),
                    reason="tiny world weights not shipped yet")
def test_shipped_world_matches_checksums_and_samples_a_clip():
    from ivlite.evaluation import sample_clips

    verify_manifest(SHIPPED)
    model = load_tiny_world()
    # trained with frame positions: a loader that dropped them would blind it to frame order
    assert model.unet.transformer_in.transformer_blocks[0].pos_embed is not None
    clips = sample_clips(model, ["a red circle moving left"], ddim_steps=20, height=32, width=32)
    assert clips.shape == (1, 16, 3, 32, 32) and torch.isfinite(clips).all()


def test_frozen_temporal_layers_make_the_video_model_the_image_model_per_frame():
    """With temporal attentions zeroed (and temporal convs zero-initialised, as diffusers builds
    them), a clip's frames are denoised independently: frame j of an F-frame clip equals the
    same frame run alone at F = 1, so the video stage starts from the image stage's model."""
    torch.manual_seed(0)
    unet = build_unet().eval()
    assert train_t2v.zero_temporal_attention_outputs(unet) == 8   # transformer_in + 7 blocks
    x = torch.randn(1, 4, 4, 8, 8)
    emb = torch.randn(1, 77, UNET_CONFIG["cross_attention_dim"])
    with torch.no_grad():
        clip = unet(x, 500, encoder_hidden_states=emb).sample
        alone = torch.cat([unet(x[:, :, j:j + 1], 500, encoder_hidden_states=emb).sample
                           for j in range(4)], dim=2)
    torch.testing.assert_close(clip, alone, atol=1e-5, rtol=1e-4)
    # A fresh UNet's temporal attentions are not identities: the same check fails without it.
    fresh = build_unet().eval()
    with torch.no_grad():
        clip = fresh(x, 500, encoder_hidden_states=emb).sample
        alone = torch.cat([fresh(x[:, :, j:j + 1], 500, encoder_hidden_states=emb).sample
                           for j in range(4)], dim=2)
    assert (clip - alone).abs().max() > 1e-3
    names = {n for n, p in unet.named_parameters()
             if any(p is q for q in train_t2v.temporal_parameters(unet))}
    assert names and all("temp_" in n or n.startswith("transformer_in") for n in names)


def test_frame_positions_tell_identical_frames_apart_and_survive_a_reload(tmp_path):
    """Without a position embedding (ModelScope's temporal attention) a fresh UNet denoises a clip
    of identical frames into identical frames: nothing tells frame 0 from frame 7. With
    ``frame_positions="sinusoidal"`` it does not, the state dict keeps ModelScope's keys, and
    the export's config rebuilds the embeddings when the folder loads."""
    torch.manual_seed(0)
    plain = build_unet().eval()
    positioned = build_unet({**UNET_CONFIG, "frame_positions": "sinusoidal"}).eval()
    assert sorted(positioned.state_dict()) == sorted(plain.state_dict())
    positioned.load_state_dict(plain.state_dict())
    x = torch.randn(1, 4, 1, 8, 8).expand(1, 4, 8, 8, 8)
    emb = torch.randn(1, 77, UNET_CONFIG["cross_attention_dim"])
    with torch.no_grad():
        same = plain(x, 999, encoder_hidden_states=emb).sample
        told = positioned(x, 999, encoder_hidden_states=emb).sample
    assert (same - same[:, :, :1]).abs().max() < 1e-5
    assert (told - told[:, :, :1]).abs().amax(dim=(0, 1, 3, 4))[1:].min() > 1e-3
    with pytest.raises(ValueError, match="frame_positions='learned'; allowed: 'sinusoidal'"):
        build_unet({**UNET_CONFIG, "frame_positions": "learned"})
    world = _write_world(tmp_path / "world")
    save_weights(positioned.state_dict(), world / "unet" / "model.safetensors", dtype=torch.float32)
    (world / "unet" / "config.json").write_text(json.dumps(
        {"model": {**UNET_CONFIG, "frame_positions": "sinusoidal"}}))
    write_manifest(world)
    loaded = load_tiny_world(world).unet
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 999, encoder_hidden_states=emb).sample, told)
    # train_t2v --init-from: continuing without them is refused; adding them to a plain UNet is not
    with pytest.raises(SystemExit, match="trained with --frame-positions sinusoidal; pass"):
        train_t2v._init_from(world, "unet", build_unet(), None, build_unet(), None)
    plain_world = _write_world(tmp_path / "plain")
    target = build_unet({**UNET_CONFIG, "frame_positions": "sinusoidal"})
    assert train_t2v._init_from(plain_world, "unet", target, None, build_unet(), None) == 0


def test_high_noise_share_draws_timesteps_from_the_top_of_the_schedule():
    from argparse import Namespace

    uniform = train_t2v.draw_timesteps(4096, 1000, Namespace(high_noise_share=0.0,
                                                             high_noise_from=600),
                                       torch.Generator().manual_seed(0))
    # share 0 keeps the old draw exactly (runs started before the option resume unchanged)
    assert torch.equal(uniform, torch.randint(0, 1000, (4096,),
                                              generator=torch.Generator().manual_seed(0)))
    top = train_t2v.draw_timesteps(4096, 1000, Namespace(high_noise_share=1.0, high_noise_from=600),
                                   torch.Generator().manual_seed(0))
    assert int(top.min()) >= 600 and int(top.max()) <= 999
    half = train_t2v.draw_timesteps(4096, 1000, Namespace(high_noise_share=0.5, high_noise_from=600),
                                    torch.Generator().manual_seed(0))
    assert 0.65 < float((half >= 600).float().mean()) < 0.75   # 0.5 + 0.5 * 0.4


def test_snr_floor_keeps_the_clean_clip_error_weighted_at_high_noise():
    from ivlite.models import modelscope_scheduler

    ab = modelscope_scheduler().alphas_cumprod
    t = torch.tensor([999, 951, 600, 300, 100, 0])
    snr = ab[t] / (1 - ab[t])
    plain = train_t2v.min_snr_weight(ab, t, 5.0)
    # floor 0 is Min-SNR-5 exactly: weight 1 where SNR < 5, 5 / SNR above
    assert torch.equal(plain, torch.where(snr < 5, torch.ones_like(snr), 5 / snr))
    floored = train_t2v.min_snr_weight(ab, t, 5.0, floor=1.0)
    x0_weight = floored * snr
    assert torch.allclose(x0_weight, snr.clamp(1.0, 5.0))
    assert float(floored[0]) > 200          # t = 999: SNR 0.0047, so the epsilon weight is ~1 / SNR
    assert torch.equal(floored[-2:], plain[-2:])   # SNR >= 5: unchanged
    with pytest.raises(SystemExit, match="--snr-floor 6.0 is out of range"):
        train_t2v.train(train_t2v.parse_args(["--vae", "v", "--out", "o", "--snr-floor", "6"]))


def test_signal_free_samples_are_pure_noise_whose_target_gives_back_the_clip():
    from argparse import Namespace

    from ivlite.models import modelscope_scheduler

    sched = modelscope_scheduler()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 4, 16, 8, 8, generator=gen)
    noise = torch.randn(64, 4, 16, 8, 8, generator=gen)
    t = torch.randint(0, 1000, (64,), generator=gen)
    off = Namespace(signal_free_share=0.0, signal_free_from=900)
    xt, target, t_off, none = train_t2v.noisy_inputs(x0, noise, t, sched, off, gen)
    assert not none.any()
    assert torch.equal(t_off, t) and torch.equal(target, noise)   # share 0: the plain recipe
    assert torch.equal(xt, sched.add_noise(x0, noise, t))
    on = Namespace(signal_free_share=0.5, signal_free_from=900)
    xt, target, t_on, free = train_t2v.noisy_inputs(x0, noise, t, sched, on, gen)
    assert torch.equal(free, (xt == noise).flatten(1).all(1))
    assert 16 < int(free.sum()) < 48 and int(t_on[free].min()) >= 900
    assert torch.equal(t_on[~free], t[~free]) and torch.equal(target[~free], noise[~free])
    # the sampler's clean-clip formula turns every target back into its clip
    ab = sched.alphas_cumprod[t_on].view(-1, 1, 1, 1, 1)
    torch.testing.assert_close((xt - (1 - ab).sqrt() * target) / ab.sqrt(), x0,
                               atol=1e-4, rtol=1e-4)
    # with the captions' mean clips as targets, x0_hat gives back the mean instead
    mean = torch.randn(64, 4, 16, 8, 8, generator=gen)
    xt, target, t_on, free = train_t2v.noisy_inputs(x0, noise, t, sched, on, gen, mean)
    ab = sched.alphas_cumprod[t_on].view(-1, 1, 1, 1, 1)
    x0_hat = (xt - (1 - ab).sqrt() * target) / ab.sqrt()
    torch.testing.assert_close(x0_hat[free], mean[free], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x0_hat[~free], x0[~free], atol=1e-4, rtol=1e-4)
    with pytest.raises(SystemExit, match="zero-snr-v needs --snr-floor > 0"):
        train_t2v.train(train_t2v.parse_args(["--vae", "v", "--out", "o", "--schedule",
                                              "zero-snr-v"]))
    for flag, value in (("--signal-free-share", "1.5"), ("--signal-free-from", "1000"),
                        ("--signal-free-floor", "6.0")):
        with pytest.raises(SystemExit, match=f"{flag} {value} is out of range"):
            train_t2v.train(train_t2v.parse_args(["--vae", "v", "--out", "o", flag, value]))


def test_caption_means_average_the_clips_of_each_caption():
    latents = torch.arange(5.0).view(5, 1, 1, 1, 1).expand(5, 4, 2, 3, 3)
    means = train_t2v.caption_means(latents, ["a", "b", "a", "a", "b"])
    a, b = (0 + 2 + 3) / 3, (1 + 4) / 2
    torch.testing.assert_close(means[:, 0, 0, 0, 0], torch.tensor([a, b, a, a, b]))
    assert means.shape == latents.shape


def test_motions_and_layers_per_block_are_checked():
    for args, message in ((["--motions", "left,sideways"], "'moving sideways' is not a motion"),
                          (["--layers-per-block", "0"], "--layers-per-block 0 is out of range")):
        with pytest.raises(SystemExit, match=message):
            train_t2v.train(train_t2v.parse_args(["--vae", "v", "--out", "o", *args]))


def test_only_category_names_the_allowed_categories():
    with pytest.raises(SystemExit, match="'pink circle' is not a training category; allowed: "
                                         "blue circle, "):
        train_t2v.train(train_t2v.parse_args(["--vae", "v", "--out", "o",
                                              "--only-category", "pink circle"]))


def test_text_encoder_freeze_keeps_its_init_and_init_parts_unet_restarts_the_schedule(tmp_path):
    vae_args = ["--steps", "1", "--clips", "4", "--batch", "4", "--held-out-clips", "2"]
    train_vae.main(["--out", str(tmp_path / "vae")] + vae_args)
    common = ["--vae", str(tmp_path / "vae" / "export"), "--clips", "8", "--image-batch", "4",
              "--batch", "2", "--eval-every", "1000", "--eval-samples", "1", "--save-every", "1000",
              "--log-every", "1", "--lr", "1e-2", "--warmup", "1"]

    def run(name, *args):
        train_t2v.main(["--out", str(tmp_path / name)] + common + list(args))
        return {part: load_file(tmp_path / name / "export" / part / "model.safetensors")
                for part in ("unet", "text_encoder")}

    short = run("short", "--image-steps", "1", "--video-steps", "0")
    frozen = run("frozen", "--image-steps", "2", "--video-steps", "1")
    trained = run("trained", "--image-steps", "2", "--video-steps", "1", "--text-encoder", "train")
    # The default encoder is the seeded random init, whatever the run's length...
    assert all(torch.equal(short["text_encoder"][k], frozen["text_encoder"][k])
               for k in short["text_encoder"])
    # ...and training it jointly moves it (the same seed gives the same init).
    assert any(not torch.equal(short["text_encoder"][k], trained["text_encoder"][k])
               for k in short["text_encoder"])

    # --init-parts unet: the UNet comes from the export, the schedule restarts at the image stage.
    init = run("init", "--image-steps", "1", "--video-steps", "0", "--seed", "1",
               "--init-from", str(tmp_path / "frozen" / "export"), "--init-parts", "unet")
    log = [json.loads(l) for l in (tmp_path / "init" / "log.jsonl").read_text().splitlines()]
    assert [(l["step"], l["stage"]) for l in log] == [(1, "image")]
    fresh = run("fresh", "--image-steps", "1", "--video-steps", "0", "--seed", "1")
    source = frozen["unet"]

    def dist(a):
        return sum(float((a[k].float() - source[k].float()).norm()) for k in source)
    assert dist(init["unet"]) < 0.1 * dist(fresh["unet"])
    # its text encoder is this run's own (seed 1), not the export's
    assert any(not torch.equal(init["text_encoder"][k], frozen["text_encoder"][k])
               for k in frozen["text_encoder"])

    # --init-parts all continues the export's step count, and the EMA's warm-up restarts there:
    # after one step the average is 0.1 export + 0.9 live weights, not 0.999 export.
    cont = run("cont", "--image-steps", "2", "--video-steps", "2",
               "--init-from", str(tmp_path / "frozen" / "export"))
    state = json.loads((tmp_path / "cont" / "state" / "state.json").read_text())
    assert (state["step"], state["ema_start"]) == (4, 3)
    live = load_file(tmp_path / "cont" / "state" / "unet.safetensors")
    mixed = {k: 0.1 * source[k].float() + 0.9 * live[k] for k in source}
    gap = sum(float((cont["unet"][k].float() - mixed[k]).norm()) for k in source)
    assert gap < 0.01 * sum(float((live[k] - source[k].float()).norm()) for k in source)
    # ... and so does the learning rate's warm-up: the fresh optimizer's first step gets 1/4.
    run("warm", "--image-steps", "2", "--video-steps", "2", "--warmup", "4",
        "--init-from", str(tmp_path / "frozen" / "export"))
    log = [json.loads(l) for l in (tmp_path / "warm" / "log.jsonl").read_text().splitlines()]
    assert [(l["step"], l["lr"]) for l in log] == [(4, 1e-2 / 4)]


def test_word_sensitivity_swaps_one_word_and_scores_every_timestep(world_dir):
    from ivlite.world.captions import MOTIONS
    from tools.tiny_world.motion_check import OPPOSITE_MOTION, word_sensitivity

    assert set(OPPOSITE_MOTION) == set(MOTIONS)
    assert all(OPPOSITE_MOTION[OPPOSITE_MOTION[m]] == m != OPPOSITE_MOTION[m] for m in MOTIONS)
    r = word_sensitivity(load_tiny_world(world_dir), clips=4, timesteps=(900, 300))
    assert list(r) == ["900", "300"]
    for row in r.values():
        assert set(row) == {"true", "motion_swapped", "colour_swapped"}
        # a random UNet reads every token, so each swap changes its prediction
        assert row["motion_swapped"] != row["true"] != row["colour_swapped"]
        assert all(v > 0 for v in row.values())


def test_word_sensitivity_scores_a_v_model_against_v(world_dir):
    from ivlite.method.ddim import sample_noise
    from ivlite.world.data import world_clips
    from tools.tiny_world.motion_check import word_sensitivity

    model = load_tiny_world(world_dir)
    model.scheduler = train_t2v.training_scheduler("zero-snr-v")
    got = word_sensitivity(model, clips=2, timesteps=(999,))["999"]["true"]
    data = world_clips(model, clips=2, seed=0)
    x0 = data.latents
    noise = sample_noise(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 999)
    with torch.no_grad():
        pred = model.unet(model.scheduler.add_noise(x0, noise, t), t,
                          encoder_hidden_states=model.encode_prompts(data.captions)).sample
    v = model.scheduler.get_velocity(x0, noise, t)   # = -x0 at t = 999, where abar = 0
    assert got == pytest.approx(float((pred - v).square().mean()), rel=1e-5)
    assert got != pytest.approx(float((pred - noise).square().mean()), rel=1e-2)
    # --frames 8 --frame-stride 2: rendered frames 0, 2, ..., 14, the same noise draw
    strided = word_sensitivity(model, clips=2, timesteps=(999,), num_frames=8,
                               frame_stride=2)["999"]["true"]
    x0 = x0[:, :, ::2]
    noise = sample_noise(x0.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = model.unet(model.scheduler.add_noise(x0, noise, t), t,
                          encoder_hidden_states=model.encode_prompts(data.captions)).sample
    v = model.scheduler.get_velocity(x0, noise, t)
    assert strided == pytest.approx(float((pred - v).square().mean()), rel=1e-5)
    with pytest.raises(ValueError, match="num_frames=8, frame_stride=3"):
        word_sensitivity(model, clips=2, num_frames=8, frame_stride=3)


def test_word_distances_and_first_step_travel(world_dir):
    from tools.tiny_world.motion_check import first_step_travel, word_distances

    model = load_tiny_world(world_dir)
    d = word_distances(model)
    assert set(d) == {"motion", "colour", "token_norm"} and all(v > 0 for v in d.values())
    same = word_distances(model, "a red circle moving left")
    assert same == d   # deterministic
    travel = first_step_travel(model, ["a red circle moving left"], draws=2)
    assert list(travel) == ["a red circle moving left"] and len(travel["a red circle moving left"]) == 2


def test_word_signal_finds_the_word_that_shapes_the_clips_and_is_unbiased():
    from ivlite.world.captions import MOTIONS, Scene
    from tools.tiny_world.motion_check import word_signal

    gen = torch.Generator().manual_seed(0)
    scenes = [Scene(c, s, m) for c in ("red", "blue") for s in ("circle", "square")
              for m in MOTIONS] * 6                       # 6 clips per caption
    captions = [s.caption for s in scenes]
    noise = torch.randn(len(scenes), 4, 8, 4, 4, generator=gen)
    # pure noise: no word explains anything; the split-half estimate stays near 0, where the
    # plain squared distance of 6-clip means would report ~1/6 - 1/12 of the variance
    r = word_signal(noise, captions)
    assert all(abs(r[k]) < 0.03 for k in ("colour", "shape", "motion", "background")), r
    # add one pattern per motion word with variance 1: it explains half of the total variance
    pattern = torch.randn(len(MOTIONS), 4, 8, 4, 4, generator=gen)
    shaped = noise + torch.stack([pattern[MOTIONS.index(s.motion)] for s in scenes])
    r = word_signal(shaped, captions)
    assert 0.35 < r["motion"] < 0.6 and abs(r["colour"]) < 0.03 and abs(r["shape"]) < 0.03, r
    assert r["background"] == 0.0    # one background only: nothing to tell apart


def test_frame_index_probe_scores_every_block(world_dir):
    from ivlite.world.data import world_clips
    from tools.tiny_world.motion_check import frame_index_probe

    model = load_tiny_world(world_dir)
    clips = world_clips(model, clips=8, seed=0)
    r = frame_index_probe(model, clips.latents, clips.captions)
    unet = model.unet
    assert list(r) == ["input"] + [f"down_blocks.{i}" for i in range(len(unet.down_blocks))] + \
        ["mid_block"] + [f"up_blocks.{i}" for i in range(len(unet.up_blocks))]
    assert all(v <= 1.0 for v in r.values())
    # the probe fitted on the input's channel means has nothing to go on
    assert r["input"] < 0.1
    # a feature that is the frame index itself scores 1
    x = torch.zeros(8, 4, 16, 8, 8)
    x[:, 0] = torch.arange(16.0)[:, None, None]
    assert frame_index_probe(model, x * 40, clips.captions, t=0)["input"] > 0.99


def test_report_scores_one_category_on_request(world_dir, capsys):
    from tools.tiny_world import report

    r = report.main(["--world", str(world_dir), "--samples", "2", "--category", "red circle"])
    assert list(r) == ["category red circle"] and r["category red circle"]["samples"] == 2
    with pytest.raises(SystemExit):
        report.main(["--world", str(world_dir), "--category", "pink circle"])
    assert "'pink circle' is not a category of the world" in capsys.readouterr().err


def test_leak_reading_scores_the_path_along_the_true_direction():
    from tools.tiny_world.motion_check import leak_reading

    model = load_tiny_world()
    r = leak_reading(model, clips=3, draws=2, timesteps=(999,))
    row = r["999"]
    assert set(row) == {"caption", "reversed", "pure_noise", "clip", "snr"}
    assert row["snr"] == pytest.approx(0.0, abs=1e-9)   # zero terminal SNR (ModelScope's: 0.0047)
    assert row["clip"] > 5.0   # world clips travel 9.6-14.4 px the way their caption says

    fixed = model.encode_prompts(["a red circle moving up"])   # a model deaf to its caption
    model.encode_prompts = lambda prompts: fixed.expand(len(prompts), -1, -1)
    deaf = leak_reading(model, clips=3, draws=2, timesteps=(999,))["999"]
    assert deaf["caption"] == deaf["reversed"] and deaf["clip"] == row["clip"]


def test_report_motion_effect_on_one_category_at_eight_frames(world_dir, capsys):
    from tools.tiny_world import report

    r = report.main(["--world", str(world_dir), "--samples", "0", "--category", "red circle",
                     "--frames", "8", "--motions", "left,right", "--motion-effect",
                     "--ddim-steps", "2"])
    assert list(r["motion_word_effect"]) == ["moving left", "moving right"]
    assert all(len(v) == 2 for v in r["motion_word_effect"].values())
    r = report.main(["--world", str(world_dir), "--samples", "0", "--frames", "8",
                     "--frame-stride", "2", "--word-sensitivity"])
    assert list(r["word_sensitivity"]) == ["999", "900", "800", "700", "500", "300"]
    for bad, message in ((["--frames", "17"], "--frames 17 is out of range"),
                         (["--frames", "8", "--frame-stride", "3"],
                          "--frame-stride 3 is out of range"),
                         (["--motions", "left,back"], "--motions 'left,back'")):
        with pytest.raises(SystemExit):
            report.main(["--world", str(world_dir), *bad])
        assert message in capsys.readouterr().err


def test_device_names_are_checked_before_any_work():
    assert train_t2v.training_device("cpu") == torch.device("cpu")
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    assert train_t2v.training_device("auto").type == auto
    for name in ("tpu", "gpu0"):
        with pytest.raises(SystemExit, match=f"--device='{name}' is not a device; allowed: 'auto'"):
            train_t2v.train(train_t2v.parse_args(["--vae", "v", "--out", "o", "--device", name]))
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="--device='cuda' but no CUDA device is available"):
            train_t2v.train(train_t2v.parse_args(["--vae", "v", "--out", "o", "--device", "cuda"]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_train_t2v_on_cuda_follows_the_cpu_run(tmp_path, monkeypatch):
    """Every draw is made on the CPU, so a CUDA run sees the same batches: equal losses up to
    float rounding (TF32 off), and an export that loads."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    args = ["--vae", str(SHIPPED / "vae"), "--image-steps", "2", "--video-steps", "3",
            "--clips", "8", "--image-batch", "4", "--batch", "2", "--eval-every", "3",
            "--eval-samples", "1", "--log-every", "1", "--schedule", "zero-snr-v",
            "--snr-floor", "1"]
    losses = {}
    for device in ("cpu", "cuda"):
        train_t2v.main(["--out", str(tmp_path / device), "--device", device] + args)
        log = [json.loads(l) for l in (tmp_path / device / "log.jsonl").read_text().splitlines()]
        losses[device] = [l["loss"] for l in log]
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-3)
    build_unet().load_state_dict(load_weights(tmp_path / "cuda" / "export" / "unet" /
                                              "model.safetensors"))


def test_ema_update_moves_every_parameter_by_one_minus_decay():
    from tools.tiny_world.training import ema_update

    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in ema.parameters()]
    ema_update(ema, model, 0.9)
    for e, b, p in zip(ema.parameters(), before, model.parameters()):
        assert torch.allclose(e, 0.9 * b + 0.1 * p)
    assert all(not e.requires_grad or e.grad is None for e in ema.parameters())
