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
