"""Run configs: TOML round trip and one test per error path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hwquant.app.config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_config
from hwquant.core.errors import ConfigError
from hwquant.qat.recipe import Recipe

FULL = """
out_dir = "runs/full"

[model]
name = "small_cnn"
width = 0.5
init = "runs/fp32/last.pt"

[data]
name = "cifar10"
root = "none"
batch_size_eval = 256
augment = false

[train]
epochs = 5
batch_size = 64
optimizer = "adam"
lr = 1           # an integer where a float is expected
momentum = 0.85
nesterov = false
weight_decay = 0.0
schedule = "onecycle"
warmup_epochs = 1
label_smoothing = 0.1
amp = false
seed = 7
deterministic = false
checkpoint_every = 100
grad_clip = 2.5

[recipe]
weight_bits = 3
first_layer_bits = "none"
"""

MINIMAL = '[model]\nname = "m"\n[data]\nname = "d"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_full_file_maps_onto_the_dataclasses(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config == RunConfig(
        out_dir="runs/full",
        model=ModelConfig(name="small_cnn", width=0.5, init="runs/fp32/last.pt"),
        data=DataConfig(name="cifar10", root=None, batch_size_eval=256, augment=False),
        train=TrainConfig(
            epochs=5,
            batch_size=64,
            optimizer="adam",
            lr=1.0,
            momentum=0.85,
            nesterov=False,
            weight_decay=0.0,
            schedule="onecycle",
            warmup_epochs=1.0,
            label_smoothing=0.1,
            amp=False,
            seed=7,
            deterministic=False,
            checkpoint_every=100,
            grad_clip=2.5,
        ),
        recipe=Recipe(weight_bits=3, first_layer_bits=None),
    )
    assert isinstance(config.train.lr, float)


def test_to_toml_round_trips(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert load_config(write(tmp_path, config.to_toml())) == config
    assert config.to_dict()["recipe"]["first_layer_bits"] is None


def test_defaults_and_no_recipe_means_float(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.train == TrainConfig()
    assert config.recipe is None
    assert load_config(write(tmp_path, config.to_toml())) == config


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[train]\nlrr = 0.1", r"unknown field 'train.lrr' in \[train\] \(did you mean 'lr'\?\)"),
        ("[train]\nlrr = 0.1", r"Fix: use only epochs, batch_size, optimizer, lr,"),
        ("extra = 1", r"unknown field 'extra' in the top level"),
        ("[recipe]\nbits = 4", r"unknown field 'recipe.bits'"),
        ('[train]\nepochs = "3"', r"train.epochs='3' is a string. Fix: use an integer\."),
        ("[train]\nepochs = 2.5", r"train.epochs=2.5 is a float\. Fix: use an integer"),
        ("[train]\namp = 1", r"train.amp=1 is an integer\. Fix: use true or false"),
        ("[train]\nlr = true", r"train.lr=True is a boolean\. Fix: use a number"),
        ("[train]\ngrad_clip = [1]", r'grad_clip=\[1\] is an array\. Fix: use a number or "none"'),
        ('[train]\noptimizer = "adamw"', r"optimizer='adamw' is not allowed.*'sgd', 'adam'"),
        ('[train]\nschedule = "step"', r"'cosine', 'onecycle', 'constant'"),
        ("[train]\nlr = -0.1", r"train.lr=-0.1 is out of range\. Fix: use a float > 0"),
        ("[train]\nmomentum = 0.0", r"train.nesterov=True is out of range.*momentum = 0"),
        ("[recipe]\nweight_bits = 40", r"recipe.weight_bits=40 is not a valid bit-width"),
        ('[recipe]\nweight_bits = "4"', r"recipe.weight_bits='4' is a string"),
        ('train = "fast"', r"train must be a table, not a string"),
    ],
)
def test_bad_field_names_table_field_and_fix(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, text + "\n" + MINIMAL)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("cutout = -2", r"data.cutout=-2 is out of range\. Fix: use an integer >= 0"),
        (
            "cutout = 16\naugment = false",
            r"data.cutout=16 with augment=False.*augment = true, or cutout = 0",
        ),
    ],
)
def test_cutout_is_a_side_of_an_augmentation(tmp_path: Path, data: str, match: str) -> None:
    """Cutout is refused without the augmentation it is part of, and with a negative side."""
    path = write(tmp_path, f'[model]\nname = "m"\n[data]\nname = "d"\n{data}\n')
    with pytest.raises(ConfigError, match=match):
        load_config(path)
    path = write(tmp_path, '[model]\nname = "m"\n[data]\nname = "d"\ncutout = 16\n')
    assert load_config(path).data.cutout == 16


def test_missing_table_and_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data is required\. Fix: add a \[data\] table"):
        load_config(write(tmp_path, '[model]\nname = "m"\n'))
    with pytest.raises(ConfigError, match=r"model.name is required.*name = \.\.\. to \[model\]"):
        load_config(write(tmp_path, '[model]\n[data]\nname = "d"\n'))


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[train]\nepochs = = 3\n")
    with pytest.raises(ConfigError, match=rf"{path}: invalid TOML: .*line 6"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.toml' does not exist\. Fix: check the path"):
        load_config(tmp_path / "nope.toml")


def test_commands_load_without_tomli_w_which_only_writing_a_config_needs() -> None:
    """benchmarks/gpu_tier.sh runs hwquant from src/ on a device image that has no tomli-w."""
    blocked = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'tomli_w':\n"
        "            raise ImportError('tomli_w blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import hwquant.app.cli, hwquant.app.bench.reproduce\n"
        "from hwquant.app.config import RunConfig, ModelConfig, DataConfig\n"
        "config = RunConfig(model=ModelConfig(name='m'), data=DataConfig(name='d'))\n"
        "try:\n"
        "    config.to_toml()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tomli_w blocked"  # only the writer needs it
