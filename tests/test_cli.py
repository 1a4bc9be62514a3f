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


def test_every_command_names_only_real_defaults():
    from glmv.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"serve", "chat", "ground", "doc", "render", "agent", "train", "eval", "bench"} <= commands.keys()
    for name, command in commands.items():
        text = command.format_help()
        assert not any(f"(default: {empty})" in text for empty in ("None", "False", "[]")), name
