"""Every experiment config loads, validates, and documents how to run it."""

import importlib
import os

import jax
import pytest

from sora_jax.data.loader import components_config
from sora_jax.models import SoraConfig, SoraModel, count_parameters
from sora_jax.train import init_from
from sora_jax.train.init import init_inputs
from sora_jax.data.loader import example_spec

# Every experiment; configs/from_run.py reruns a saved config.json instead (tested below).
CONFIGS = sorted(f[:-3] for f in os.listdir(os.path.join(os.path.dirname(__file__), "..", "..", "configs"))
                 if f.endswith(".py") and not f.startswith("_") and f != "from_run.py")


def test_the_expected_configs_exist():
    assert {"base", "demo", "shakespeare_char", "shapes_multitask", "sora_base", "sora_large"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_validates_and_documents_its_command(name):
    module = importlib.import_module(f"configs.{name}")
    assert f"--config=configs/{name}.py" in module.__doc__
    config = module.get_config()
    init_from.resolve(config)  # an imported part's architecture comes from its checkpoint, as in training
    model = SoraConfig.from_dict(config.model)
    assert config.train.num_steps > 0 and components_config(config.data)
    # The model builds for the data it will see (parameters as shapes only).
    sora = SoraModel(model)
    inputs = init_inputs(example_spec(config.data), sora)
    text, valid, images, tokens = inputs
    if text is None and images is None:
        shapes = jax.eval_shape(lambda: sora.init(jax.random.key(0), tokens, method=SoraModel.decode))
    else:
        shapes = jax.eval_shape(lambda: sora.init(jax.random.key(0), text, valid, images, tokens))
    total = count_parameters(shapes["params"])["total"]
    documented = {"sora_base": (255e6, 275e6), "sora_large": (1.8e9, 2.0e9)}.get(name)
    if documented:
        assert documented[0] < total < documented[1], total


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_passes_the_value_checks(name):
    from sora_jax.train.validate import check_values
    check_values(importlib.import_module(f"configs.{name}").get_config())


@pytest.mark.parametrize("key,value,message", [
    ("train.nonfinite", "abrt", "config key train.nonfinite: must be one of ('skip', 'abort'), got 'abrt'"),
    ("train.keep_checkpoints", -1, "config key train.keep_checkpoints: must be >= 0 (0: keep all), got -1"),
    ("data.batch_size", 0, "config key data.batch_size: must be >= 1, got 0"),
    ("data.eval_batch_size", 0, "config key data.eval_batch_size: must be >= 1"),
    ("optim.learning_rate", -1.0, "config key optim.learning_rate: must be >= 0, got -1.0"),
    ("optim.warmup_steps", -5, "config key optim.warmup_steps"),
    ("optim.end_lr_fraction", 1.5, "config key optim.end_lr_fraction: must be in [0, 1]"),
    ("train.z_loss", float("nan"), "config key train.z_loss: must be >= 0, got nan"),
    ("train.peak_tflops", -1.0, "config key train.peak_tflops"),
    ("train.task_weights.lm", -1.0, "config key train.task_weights: weights must be >= 0, got {'lm': -1.0}"),
    ("train.debug_nan_steps", (0,), "config key train.debug_nan_steps: steps are 1-based, got (0,)"),
])
def test_values_wrong_on_their_own_name_their_key(key, value, message):
    from configs.base import get_config
    from sora_jax.train.errors import ConfigurationError
    from sora_jax.train.validate import check_values
    config = get_config()
    *path, last = key.split(".")
    node = config
    for part in path:
        node = node[part]
    with node.ignore_type():
        node[last] = value
    with pytest.raises(ConfigurationError) as raised:
        check_values(config)
    assert message in str(raised.value)


def test_a_mesh_shape_that_is_not_integers_names_the_key():
    from sora_jax.train.errors import ConfigurationError
    from sora_jax.train.mesh import resolve_shape
    with pytest.raises(ConfigurationError, match="config key mesh.shape: needs 3 integer sizes .* got 'abc'"):
        resolve_shape("abc", 8)


@pytest.mark.parametrize("name", CONFIGS)
def test_a_runs_saved_config_json_loads_back_as_the_same_config(tmp_path, name):
    import json

    from configs import from_run
    config = importlib.import_module(f"configs.{name}").get_config()
    with open(tmp_path / "config.json", "w") as f:  # as the trainer writes it
        json.dump(json.loads(config.to_json_best_effort()), f, indent=2)
    again = from_run.get_config(str(tmp_path / "config.json"))
    assert again.to_dict() == config.to_dict()  # tuples and all


def test_a_saved_config_with_an_unknown_setting_names_it(tmp_path):
    import json

    from configs import from_run
    (tmp_path / "config.json").write_text(json.dumps({"train": {"num_stepz": 3}}))
    with pytest.raises(KeyError, match="train.num_stepz is not a setting"):
        from_run.get_config(str(tmp_path / "config.json"))
