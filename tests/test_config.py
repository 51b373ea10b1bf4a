from dataclasses import dataclass, field

import pytest

from cxrl.config import load_config, parse_overrides, valid_keys
from cxrl.errors import ConfigError


@dataclass
class Optim:
    lr: float = 0.1
    name: str = "adamw"


@dataclass
class Cfg:
    batch_size: int = 32
    optim: Optim = field(default_factory=Optim)
    crops: list[int] = field(default_factory=lambda: [2, 6])
    weights: str | None = None


def test_overrides_nest_and_parse_yaml():
    assert parse_overrides(["a.b=1", "c=[1, 2]", "d=x"]) == {"a": {"b": 1}, "c": [1, 2], "d": "x"}


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("batch_size: 64\noptim:\n  name: lars\n")
    cfg = load_config(Cfg, f, ["optim.lr=3", "weights=w.safetensors"])
    assert (cfg.batch_size, cfg.optim.name, cfg.optim.lr, cfg.weights) == (64, "lars", 3.0, "w.safetensors")


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) optim.lrr; valid keys: optim.lr, optim.name"):
        load_config(Cfg, overrides=["optim.lrr=1"])
    with pytest.raises(ConfigError, match="valid keys: batch_size, optim.lr, optim.name, crops, weights"):
        load_config(Cfg, overrides=["epochs=1"])
    assert valid_keys(Cfg) == ["batch_size", "optim.lr", "optim.name", "crops", "weights"]


def test_type_errors_name_the_key():
    with pytest.raises(ConfigError, match="batch_size.*expected int.*'big'"):
        load_config(Cfg, overrides=["batch_size=big"])
    with pytest.raises(ConfigError, match="crops"):
        load_config(Cfg, overrides=["crops=3"])


def test_a_yaml_boolean_is_not_an_integer():
    with pytest.raises(ConfigError, match="batch_size.*expected int.*True"):
        load_config(Cfg, overrides=["batch_size=true"])
