"""docs/cli.md is the reference the commands generate (regenerate: python -m koopscope.cli.reference > docs/cli.md)."""

from pathlib import Path

from koopscope.cli.reference import reference

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_in_sync():
    assert (ROOT / "docs" / "cli.md").read_text() == reference()


def test_every_command_and_option_is_documented():
    text = reference()
    for needle in ("### `koopscope spectrum`", "### `koopscope train hkd`", "### `koopscope reproduce`",
                   "`--out`", "| `CKPT` |"):
        assert needle in text
    assert "|  |\n" not in text   # every option has a help text
