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

CONFIGS = sorted(f[:-3] for f in os.listdir(os.path.join(os.path.dirname(__file__), "..", "..", "configs"))
                 if f.endswith(".py") and not f.startswith("_"))


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
