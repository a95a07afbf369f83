"""LoRA adapter folders in peft's standard format: save, read, load.

An adapter folder holds ``adapter_config.json`` (peft's ``LoraConfig``) and
``adapter_model.safetensors`` (the weights of :func:`ivlite.method.lora.lora_state_dict`, keys as
``peft.get_peft_model_state_dict`` names them). diffusers and peft read it as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import LoraConfig, set_peft_model_state_dict
from safetensors.torch import load_file

from .common import atomic_write, atomic_write_json, save_safetensors
from .config import first_line
from .method.lora import ADAPTER_NAME, add_lora, check_adapter_state, has_lora, lora_state_dict

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"


def save_adapter(unet: torch.nn.Module, folder: str | Path, metadata: dict | None = None) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``folder``, each
    atomically (:func:`ivlite.common.atomic_write`): a crash mid-write leaves the previous file
    (or none), never half a file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = unet.peft_config[ADAPTER_NAME]
    state = {k: v.to("cpu") for k, v in lora_state_dict(unet).items()}
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_safetensors(
        state, tmp, metadata={"format": "pt", **(metadata or {})}))
    config_dict = config.to_dict()
    config_dict["target_modules"] = sorted(config_dict["target_modules"])
    atomic_write_json(folder / CONFIG_FILE, config_dict, newline=False, default=str)
    return folder


def read_adapter(folder: str | Path) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """Read an adapter folder; clear errors for a missing or unreadable file."""
    folder = Path(folder)
    expected = f"expected a folder with {CONFIG_FILE} and {WEIGHTS_FILE} (finetune writes " \
               f"run/adapter)"
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"adapter {str(folder)!r} is a file; {expected}")
    if not folder.is_dir():
        raise FileNotFoundError(f"adapter {str(folder)!r} does not exist: {expected}")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"adapter {str(folder)!r} has no {name}")
    try:
        data = json.loads((folder / CONFIG_FILE).read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{CONFIG_FILE} holds a {type(data).__name__}, not an object")
        _check_adapter_fields(data)
        config = LoraConfig(**{k: v for k, v in data.items()
                               if k in LoraConfig.__dataclass_fields__})
        state = load_file(folder / WEIGHTS_FILE)
    except Exception as err:
        raise ValueError(f"adapter {str(folder)!r} is corrupt or unreadable: "
                         f"{first_line(err)}") from None
    return config, state


def _check_adapter_fields(data: dict) -> None:
    """ValueError for adapter_config.json values of the wrong type, which peft would accept and
    fail on later, deep inside the model, with a traceback."""
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    targets = data.get("target_modules")
    checks = (("r", isinstance(data.get("r"), int) and not isinstance(data.get("r"), bool)
               and data.get("r") >= 1, "an integer >= 1"),
              ("lora_alpha", number(data.get("lora_alpha")) and data.get("lora_alpha") > 0,
               "a number > 0"),
              ("target_modules", isinstance(targets, str) or (
                  isinstance(targets, list) and targets and all(isinstance(t, str) and t
                                                                for t in targets)),
               "a non-empty list of module names"),
              ("lora_dropout", number(data.get("lora_dropout", 0.0))
               and 0 <= data.get("lora_dropout", 0.0) < 1, "a number in [0, 1)"))
    for key, ok, allowed in checks:
        if not ok:
            raise ValueError(f"{CONFIG_FILE}: {key}={data.get(key)!r}; allowed: {allowed}")


def load_adapter(unet: torch.nn.Module, folder: str | Path) -> torch.nn.Module:
    """Inject (if needed) and load an adapter; every key must match the model, or ValueError."""
    config, state = read_adapter(folder)
    if not has_lora(unet):
        try:
            add_lora(unet, config)
        except ValueError as err:  # its target modules do not exist in this UNet
            raise ValueError(f"adapter {str(folder)!r} does not fit this UNet: {err}") from None
    check_adapter_state(unet, state, f"adapter {str(folder)!r}")
    set_peft_model_state_dict(unet, state, adapter_name=ADAPTER_NAME)
    return unet
