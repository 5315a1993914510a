"""One-line errors for config files that fail to load (sora_jax/cli.py)."""

import runpy

import pytest

from sora_jax.cli import _innermost, config_file_error, one_line


def test_a_config_in_a_checkout_folder_named_sora_jax_is_still_the_users_code(tmp_path):
    config = tmp_path / "sora_jax" / "configs" / "bad.py"
    config.parent.mkdir(parents=True)
    config.write_text("x = 1\nraise ValueError('no such preset')\n")
    with pytest.raises(ValueError) as raised:
        runpy.run_path(str(config))
    assert config_file_error(raised.value) == f"--config: {config}:2: ValueError: no such preset"


def test_the_innermost_error_of_a_chain_stops_at_from_none():
    try:
        try:
            try:
                int("x")
            except ValueError:
                raise KeyError("hidden") from None
        except KeyError as e:
            raise RuntimeError("wrapper") from e
    except RuntimeError as e:
        inner = _innermost(e)
    assert isinstance(inner, KeyError) and one_line(inner) == "hidden"


def test_only_a_single_strings_repr_is_unquoted():
    assert one_line(ValueError("'a' 'b'")) == "'a' 'b'"
    # ml_collections' KeyError for a misspelt key, as absl passes it on: the repr of its message
    assert one_line(ValueError(repr("'num_stepz'\nDid you mean"))) == "'num_stepz' Did you mean"
    assert one_line(ValueError(repr("line one\nline two"))) == "line one line two"


def test_a_misspelt_config_key_names_its_flag():
    from sora_jax.cli import _key_message
    text = "'num_stepz' Did you mean \"num_steps\" instead of \"num_stepz\"?"
    argv = ["main", "--config=configs/base.py", "--config.data.batch_size=8", "--config.train.num_stepz=3"]
    assert _key_message(text, argv) == f"--config.train.num_stepz: config key {text}"
    assert _key_message(text) == f"config key {text}"  # no flag to name
    assert _key_message("something else", argv) == "something else"
