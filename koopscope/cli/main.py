"""Entry point of the `koopscope` command."""

from __future__ import annotations

import os

import typer

from . import consistency, demo, edit, fid, reproduce, sample, spectral, train, trajectories

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="koopscope: Hierarchical Koopman Diffusion — train, sample, and read the spectrum.")
BUILD, EVALUATE, ANALYSE, EDIT = "Build the chain", "Generate and evaluate", "Spectral analysis", "Edit and inpaint"
app.add_typer(train.app, name="train", rich_help_panel=BUILD)
app.command("trajectories", rich_help_panel=BUILD)(trajectories.trajectories)
app.command("demo", rich_help_panel=BUILD)(demo.demo)
app.command("reproduce", rich_help_panel=BUILD)(reproduce.reproduce)
app.command("sample", rich_help_panel=EVALUATE)(sample.sample)
app.command("fid", rich_help_panel=EVALUATE)(fid.fid)
app.command("spectrum", rich_help_panel=ANALYSE)(spectral.spectrum)
app.command("modes", rich_help_panel=ANALYSE)(spectral.modes)
app.command("consistency", rich_help_panel=ANALYSE)(consistency.consistency)
app.command("edit", rich_help_panel=EDIT)(edit.edit)
app.command("inpaint", rich_help_panel=EDIT)(edit.inpaint)


@app.callback()
def _root() -> None:
    """koopscope: Hierarchical Koopman Diffusion toolkit."""
    os.environ["MPLBACKEND"] = "Agg"   # figures are only saved; read when matplotlib is first imported


if __name__ == "__main__":
    app()
