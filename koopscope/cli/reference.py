"""The command-line reference (docs/cli.md), generated from the commands themselves.

    python -m koopscope.cli.reference > docs/cli.md

tests/test_cli_reference.py fails when docs/cli.md and the commands disagree.
"""

from __future__ import annotations

from enum import Enum


def _default(p) -> str:
    d = p.default
    if p.required:
        return "required"
    if d is None or (getattr(p, "is_flag", False) and d is False and not p.secondary_opts):
        return ""
    if isinstance(d, Enum):
        d = d.value
    if isinstance(d, (list, tuple)):
        d = ",".join(map(str, d))
    return f"`{d}`"


def _names(p) -> str:
    if p.param_type_name == "argument":
        return f"`{p.name.upper()}`"
    choices = [m.value for m in type(p.default)] if isinstance(p.default, Enum) else None
    names = " / ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
    return names + (" (" + " \\| ".join(map(str, choices)) + ")" if choices else "")


def _command(path: str, cmd) -> list[str]:
    lines = [f"### `koopscope {path}`", "", (cmd.help or "").strip().split("\n\n")[0], ""]
    params = [p for p in cmd.params if p.name != "help"]
    if params:
        lines += ["| argument / option | default | meaning |", "|---|---|---|"]
        for p in params:
            text = (getattr(p, "help", None) or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {_names(p)} | {_default(p)} | {text} |")
        lines.append("")
    return lines


def reference() -> str:
    """Every command and subcommand with its arguments, options, defaults and help, as Markdown."""
    import typer

    from .main import app

    root = typer.main.get_command(app)
    lines = ["# Command-line reference", "",
             "Generated from the commands by `python -m koopscope.cli.reference > docs/cli.md` (a test keeps it in",
             "sync). Every command exits with code 2 and one `error: ...` line on bad input.", ""]
    for name, cmd in root.commands.items():
        if hasattr(cmd, "commands"):
            lines += [f"## `koopscope {name}`", "", (cmd.help or "").strip(), ""]
            for sub, subcmd in cmd.commands.items():
                lines += _command(f"{name} {sub}", subcmd)
        else:
            lines += _command(name, cmd)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
