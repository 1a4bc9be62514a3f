"""The `glmv` command line, run as a user runs it."""
import argparse
import subprocess
import sys


def glmv(*args):
    return subprocess.run([sys.executable, "-m", "glmv.cli", *args], capture_output=True, text=True, timeout=300)


def test_chat_answers_about_an_image(moe_checkpoint, tmp_path):
    from media_files import random_image

    random_image(120, 80).save(tmp_path / "a.png")
    out = glmv("chat", "--model", str(moe_checkpoint), "-i", str(tmp_path / "a.png"), "--max-tokens", "5",
               "--dtype", "float32", "What is this?")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()  # the random model's answer: some text


def test_chat_reports_a_bad_image_clearly(moe_checkpoint, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    out = glmv("chat", "--model", str(moe_checkpoint), "-i", str(tmp_path / "bad.png"), "Hi")
    assert out.returncode == 1 and "cannot decode image" in out.stderr


def test_help_explains_the_options():
    out = glmv("chat", "--help")
    assert out.returncode == 0 and "--no-thinking" in out.stdout and "checkpoint folder" in out.stdout


def all_commands(parser, name="glmv"):
    """(name, parser) of the parser and every subcommand under it, nested ones included."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from all_commands(sub, f"{name} {sub_name}")


def test_every_command_names_each_real_default_once():
    from glmv.cli import build_parser
    from glmv.help_format import HelpFormatter

    commands = dict(all_commands(build_parser()))
    assert {"glmv serve", "glmv chat", "glmv ground", "glmv doc", "glmv render", "glmv agent", "glmv train",
            "glmv eval", "glmv bench", "glmv keys create", "glmv usage"} <= commands.keys()
    for name, command in commands.items():
        assert command.formatter_class is HelpFormatter, name
        text = command.format_help()
        assert not any(f"(default: {empty})" in text for empty in ("None", "False", "[]")), name
        for action in command._actions:
            shown = action.help and action.default not in (None, False, [], argparse.SUPPRESS)
            assert not (shown and "(default" in action.help), f"{name} {action.option_strings}: default written by hand"


def test_sizes_are_read_in_binary_units_and_shown_that_way():
    from glmv.cli import build_parser
    from glmv.units import format_bytes, parse_bytes
    from glmv.inputs.media import MediaLimits
    from glmv.server.config import ServerConfig

    args = build_parser().parse_args(["serve", "--max-image-bytes", "2MiB", "--kv-cache-memory", "1.5g"])
    assert args.max_image_bytes == 2 * 2**20 and args.kv_cache_memory == 3 * 2**29
    assert args.max_video_bytes == MediaLimits().max_video_bytes and args.max_request_bytes == ServerConfig.max_request_bytes
    assert [format_bytes(n) for n in (5 * 2**20, 3 * 2**30, 3072, 1536, 0)] == ["5MiB", "3GiB", "3KiB", "1536", "0"]
    assert all(parse_bytes(format_bytes(n)) == n for n in (5 * 2**20, 1536, 1000, 2**40))
    out = glmv("serve", "--max-file-bytes", "lots")
    assert out.returncode == 2 and "--max-file-bytes: not a size: 'lots'" in out.stderr
    assert "size of one image (default: 5MiB)" in " ".join(glmv("serve", "--help").stdout.split())
