"""Entry point of the `koopscope` command."""

from __future__ import annotations

import typer

from . import demo, fid, sample, spectral, train, trajectories

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="koopscope: Hierarchical Koopman Diffusion — train, sample, and read the spectrum.")
app.add_typer(train.app, name="train")
app.command("trajectories")(trajectories.trajectories)
app.command("sample")(sample.sample)
app.command("demo")(demo.demo)
app.command("fid")(fid.fid)
app.command("spectrum")(spectral.spectrum)
app.command("modes")(spectral.modes)


@app.callback()
def _root() -> None:
    """koopscope: Hierarchical Koopman Diffusion toolkit."""


if __name__ == "__main__":
    app()
