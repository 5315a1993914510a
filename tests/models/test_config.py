"""The typed model config: built from ConfigDicts, every error names its key."""

import ml_collections
import pytest

from sora_jax.models import ConfigError, SoraConfig, presets


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_presets_round_trip_through_config_dict(name):
    cd = presets.config_dict(name)
    assert isinstance(cd, ml_collections.ConfigDict)
    assert SoraConfig.from_dict(cd) == presets.get(name)


@pytest.mark.parametrize("override,message", [
    ({"decoder": {"num_head": 3}}, r"model\.decoder\.num_head: unknown key"),
    ({"decoder": {"num_heads": 3}}, r"model\.decoder\.num_heads: d_model 64 is not divisible by num_heads 3"),
    ({"decoder": {"num_heads": "4"}}, r"model\.decoder\.num_heads: expected int, got str"),
    ({"fusion": {"num_kv_heads": 3}}, r"model\.fusion\.num_kv_heads: num_heads 4 is not a multiple"),
    ({"fusion": {"mode": "concat"}}, r"model\.fusion\.mode: 'concat' is not one of joint, cross"),
    ({"text_encoder": {"attention_impl": "jax", "attention_dropout_rate": 0.1}},
     r"model\.text_encoder\.attention_dropout_rate: attention dropout needs attention_impl='explicit'"),
    ({"text_encoder": {"dropout_rate": 1.5}}, r"model\.text_encoder\.dropout_rate: must be in \[0, 1\)"),
    ({"image_encoder": {"blocks_per_stage": [1]}}, r"model\.image_encoder\.blocks_per_stage: needs one entry"),
    ({"image_encoder": {"stage_features": [30, 60]}}, r"model\.image_encoder\.stage_features: 30 channels"),
    ({"image_encoder": {"image_size": 31}}, r"model\.image_encoder\.image_size: 31 is not divisible"),
    ({"decoder": {"position": "alibi"}}, r"model\.decoder\.position: 'alibi' is not one of"),
    ({"decoder": {"remat_policy": "some"}}, r"model\.decoder\.remat_policy: 'some' is not one of"),
    ({"dtype": "float16"}, r"model\.dtype: 'float16' is not one of float32, bfloat16"),
    ({"num_classes": -1}, r"model\.num_classes: must be >= 0"),
    ({"decoder": 3}, r"model\.decoder: expected a mapping"),
    ({"fusion": {"mode": "cross", "norm_position": "post"}}, r"model\.fusion\.norm_position: gated cross"),
])
def test_bad_values_name_their_key(override, message):
    with pytest.raises(ConfigError, match=message):
        SoraConfig.from_dict(override)


def test_values_are_coerced_and_defaults_kept():
    cfg = SoraConfig.from_dict({"decoder": {"norm_eps": 1, "num_layers": 3},
                                "image_encoder": {"stage_features": [16, 32]}})
    assert cfg.decoder.norm_eps == 1.0 and isinstance(cfg.decoder.norm_eps, float)
    assert cfg.image_encoder.stage_features == (16, 32)
    assert cfg.decoder.num_layers == 3 and cfg.text_encoder == SoraConfig().text_encoder
    assert hash(cfg) == hash(SoraConfig.from_dict(cfg.to_dict()))
