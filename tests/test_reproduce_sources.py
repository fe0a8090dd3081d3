"""Which files key a reproduce stage: the entry and everything it can import, lazily or not."""

from pathlib import Path

from koopscope.reproduce.sources import imported_files
from koopscope.reproduce.stages import ROOT, Layout, plan


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_follows_lazy_relative_and_sibling_imports_and_nothing_else(tmp_path):
    _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from .sub import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "from ..c import g\n",
        "pkg/c.py": "import json\n",
        "pkg/unused.py": "",
        "pkg/lazy/__init__.py": "from importlib import import_module\n"
                                "def __getattr__(n):\n    return import_module('.x', __name__)\n",
        "pkg/lazy/x.py": "", "pkg/lazy/y.py": "",
        "scripts/run.py": "import pkg.a\nfrom helper import h\n",
        "scripts/helper.py": "import pkg.lazy\n",
        "scripts/other.py": "",
    })
    got = {str(p.relative_to(tmp_path)) for p in imported_files(tmp_path / "scripts/run.py", tmp_path)}
    assert got == {"scripts/run.py", "scripts/helper.py", "pkg/__init__.py", "pkg/a.py", "pkg/sub/__init__.py",
                   "pkg/sub/b.py", "pkg/c.py", "pkg/lazy/__init__.py", "pkg/lazy/x.py", "pkg/lazy/y.py"}


def test_fashion_stages_depend_on_what_they_use(tmp_path):
    stages = {s.name: s for s in plan("fashion", Layout.of("fashion", tmp_path, tmp_path))}

    def files(name):
        return {str(p.relative_to(ROOT)) for p in imported_files(stages[name].code, ROOT)}

    fid = files("eval-teacher")
    assert "koopscope/metrics/fid.py" in fid and "koopscope/diffusion/samplers.py" in fid
    assert not any(f.startswith(("koopscope/spectral/", "koopscope/editing/", "koopscope/reproduce/")) for f in fid)
    assert "analyses/fig_teacher_samples.py" in files("hkd-samples")   # a sibling script it imports
    assert "koopscope/spectral/consistency.py" in files("consistency")
    assert stages["consistency"].code == ROOT / "koopscope/cli/consistency.py"


def test_paths_are_written_relative_to_the_innermost_folder(tmp_path):
    from koopscope.reproduce.runner import _portable

    lay = Layout(ROOT / "figures", ROOT / "analyses/results", ROOT.parent, tmp_path / "logs")   # runs holds ROOT
    assert _portable(str(ROOT / "koopscope/models/x.safetensors"), lay) == "{root}/koopscope/models/x.safetensors"
    assert _portable(str(ROOT / "figures/a.png"), lay) == "{figures}/a.png"
    assert _portable(str(ROOT.parent / "traj"), lay) == "{runs}/traj"
