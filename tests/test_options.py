"""The options objects: checked once when made (one clear error naming the argument), shared by the
typed Python functions and the CLI's flags."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otok
from otok.tools.cli import build_parser, cli_message
from otok.tools.errors import ArgumentError
from otok.tools.options import DecodeOptions, EncodeOptions, option_names


@pytest.mark.parametrize("function, kind", [(otok.encode_file, EncodeOptions), (otok.decode_file, DecodeOptions),
                                            (otok.eval_file, EncodeOptions)])
def test_functions_take_every_option_with_its_default(function, kind):
    """The typed signature is the options class's: the same names and defaults (a field added to one and
    not the other fails here)."""
    parameters = inspect.signature(function).parameters
    defaults = kind()
    for name in option_names(kind):
        assert name in parameters, name
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].default == getattr(defaults, name), name


@pytest.mark.parametrize("command, kind", [("encode", EncodeOptions), ("decode", DecodeOptions), ("eval", EncodeOptions)])
def test_cli_has_a_flag_for_every_option_with_its_default(command, kind):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    flags = {a.dest: a for a in sub._actions}
    defaults = kind()
    for name in option_names(kind):
        assert name in flags, f"otok {command} has no --{name.replace('_', '-')}"
        assert flags[name].default == getattr(defaults, name), name


@pytest.mark.parametrize("kind, values, argument", [
    (EncodeOptions, {"max_side": -5}, "max_side"), (EncodeOptions, {"frames": 0}, "frames"),
    (EncodeOptions, {"gop": 0}, "gop"), (EncodeOptions, {"gop": 2.5}, "gop"), (EncodeOptions, {"rdo": -1.0}, "rdo"),
    (EncodeOptions, {"rdo": float("nan")}, "rdo"), (EncodeOptions, {"coder": "lzma"}, "coder"),
    (EncodeOptions, {"backend": "onnx"}, "engine_dir"), (EncodeOptions, {"precision": "fp8"}, "precision"),
    (DecodeOptions, {"crf": 1000}, "crf"), (DecodeOptions, {"crf": -1}, "crf"),
    (DecodeOptions, {"codec": "h264", "crf": 52}, "crf"), (DecodeOptions, {"codec": "ffv1", "crf": 10}, "crf"),
    (DecodeOptions, {"codec": "mpeg2"}, "codec"), (DecodeOptions, {"backend": "onnx", "engine_dir": "e", "compile": True}, "precision"),
])
def test_bad_values_are_refused_when_made(kind, values, argument):
    with pytest.raises(ArgumentError) as caught:
        kind(**values)
    assert caught.value.argument == argument
    assert cli_message(caught.value).startswith(("--", "backend")) or f"--{argument.replace('_', '-')}" in cli_message(caught.value)


def test_good_values_pass_and_the_object_is_frozen():
    options = EncodeOptions(gop=10, rdo=0, max_side=640, frames=33)
    assert (options.gop, options.rdo, options.max_side, options.frames) == (10, 0, 640, 33)
    assert DecodeOptions(codec="vp9", crf=63).crf == 63
    with pytest.raises(AttributeError):
        options.gop = 3  # type: ignore[misc]


def test_api_refuses_what_the_cli_refuses(tmp_path):
    """issue 29 B.6: encode_file(max_side=-5) and decode_file(crf=1000) used to pass silently."""
    with pytest.raises(ArgumentError, match="max_side"):
        otok.encode_file(tmp_path / "missing.mp4", tmp_path / "x.otok", max_side=-5)
    with pytest.raises(ArgumentError, match="crf"):
        otok.decode_file(tmp_path / "missing.otok", tmp_path / "x.mp4", crf=1000)


ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                     st.text(max_size=8), st.binary(max_size=16), st.lists(st.integers(-3, 3), max_size=3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(st.sampled_from(option_names(EncodeOptions) + ["codec", "crf"]), ANYTHING, max_size=4))
def test_options_refuse_anything_with_an_argument_error(values):
    """Fuzzed keyword arguments (issue 29: the Python API's arguments): an options object or one
    ArgumentError, never another exception."""
    for kind in (EncodeOptions, DecodeOptions):
        given_ = {k: v for k, v in values.items() if k in option_names(kind)}
        try:
            kind(**given_)
        except ArgumentError:
            pass


@settings(max_examples=200, deadline=None)
@given(source=st.one_of(ANYTHING, st.binary(max_size=64).map(lambda b: b"\x89OTK\r\n\x1a\n" + b)), prior=ANYTHING)
def test_read_tokens_raises_only_otok_errors(source, prior):
    """read_tokens with fuzzed arguments: tokens or an OtokError. (prior=[3] opened file descriptor 3 and
    closed it; a str is taken as a path.)"""
    try:
        otok.read_tokens(source, prior=prior)
    except otok.OtokError:
        pass
