"""Packaging: where built-in models and kernels are found, where other models' kernels go.

Fast tests check the resolution rules of ``dmftgen.paths`` on temporary folders; the slow test
builds the wheel, installs it (not editable) in a fresh venv and runs the CLI from elsewhere.
"""
import io
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from dmftgen import paths
from dmftgen.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_builtin_root_prefers_the_bundled_copy(tmp_path):
    """An installed wheel (package/_builtin/models exists) never reads folders beside the package."""
    pkg = tmp_path / "site" / "dmftgen"
    (pkg / "_builtin" / "models").mkdir(parents=True)
    (tmp_path / "site" / "models").mkdir()          # a stray top-level models/ in site-packages
    assert paths.builtin_root(pkg) == pkg / "_builtin"


def test_builtin_root_of_a_checkout_is_the_repository(tmp_path):
    pkg = tmp_path / "repo" / "dmftgen"
    pkg.mkdir(parents=True)
    assert paths.builtin_root(pkg) == tmp_path / "repo"
    # and this checkout resolves to its own top-level folders
    assert paths.MODELS_DIR == REPO / "models" and paths.GENERATED_DIR == REPO / "generated"


def test_kernel_dir_rules(tmp_path, monkeypatch):
    monkeypatch.delenv("DMFTGEN_GENERATED", raising=False)
    monkeypatch.setenv("DMFTGEN_CACHE_DIR", str(tmp_path / "cache"))
    assert paths.kernel_dir(REPO / "models" / "linreg.py") == paths.GENERATED_DIR
    model_dir = tmp_path / "mine"
    model_dir.mkdir()
    assert paths.kernel_dir(model_dir / "m.py") == model_dir / "generated"
    # a folder that cannot be written (os.access is patched: the tests may run as root)
    real_access = os.access
    monkeypatch.setattr(paths.os, "access",
                        lambda p, mode: False if Path(p) == model_dir else real_access(p, mode))
    got = paths.kernel_dir(model_dir / "m.py")
    assert got.parent == tmp_path / "cache" / "generated" and got.name.startswith("mine-")
    assert got == paths.kernel_dir(model_dir / "other.py")   # one cache folder per model folder
    monkeypatch.setenv("DMFTGEN_GENERATED", str(tmp_path / "env"))
    assert paths.kernel_dir(model_dir / "m.py") == tmp_path / "env"


def test_show_states_the_kernel_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("DMFTGEN_GENERATED", raising=False)
    src = tmp_path / "lin2.py"
    src.write_text((REPO / "models" / "linreg.py").read_text().replace('name="linreg"', 'name="lin2"'))
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["show", str(src)]) == 0
    line = [x for x in buf.getvalue().splitlines() if x.startswith("generated")][0]
    assert str(tmp_path / "generated" / "lin2.py") in line and "beside the model file" in line
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["show", "linreg"]) == 0
    assert "built-in" in buf.getvalue()


@pytest.mark.slow
def test_wheel_installs_and_runs_from_elsewhere(tmp_path):
    """`pip install .` (not editable) in a fresh venv: list, show and solve from another folder.

    Needs pip to fetch hatchling for the isolated build (network or a local index).
    """
    if shutil.which("git") is None:
        pytest.skip("git needed to make a clean clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    # the working tree, not only the last commit, is what is under test
    for rel in subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.split():
        if (REPO / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, clone / rel)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(clone)],
                   check=True)
    wheel = next(wheels.glob("dmftgen-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for folder in ("models", "generated"):
        shipped = {n.rsplit("/", 1)[1] for n in names if n.startswith(f"dmftgen/_builtin/{folder}/")}
        assert shipped == {p.name for p in (REPO / folder).glob("*.py")}
    assert not [n for n in names if "__pycache__" in n or n.endswith((".nbi", ".nbc"))]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DMFTGEN_GENERATED")}
    exe = str(venv / "bin" / "dmftgen")

    def run(*args):
        return subprocess.run([exe, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=1200)

    out = run("list")
    assert out.returncode == 0, out.stderr
    assert {line.split()[0] for line in out.stdout.splitlines()} == {p.stem for p in (REPO / "models").glob("*.py")}
    out = run("show", "linreg")
    assert out.returncode == 0 and "site-packages" in out.stdout and "built-in" in out.stdout, out.stdout
    out = run("solve", "linreg", "--T", "0.2", "--dt", "0.1", "--paths", "200", "--out", "s.json")
    assert out.returncode == 0, out.stderr
    assert (elsewhere / "s.json").is_file()
    code = textwrap.dedent("""
        import dmftgen, sys
        assert "site-packages" in dmftgen.__file__, dmftgen.__file__
        import pickle; s = dmftgen.Settings(params={"beta": 2})
        assert pickle.loads(pickle.dumps(s)) == s and hash(s) == hash(pickle.loads(pickle.dumps(s)))
    """)
    out = subprocess.run([str(py), "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_settings_pickle_and_hash():
    """Settings travel to Dask workers (pickle) and key caches (hash); equal settings, equal hash."""
    import pickle

    from dmftgen import Settings

    s = Settings(delta=3, params={"beta": 2, "alpha": 1})
    t = pickle.loads(pickle.dumps(s))
    assert t == s and hash(t) == hash(s) and {s: 1}[t] == 1
    assert list(t.params) == ["alpha", "beta"] and t.params["beta"] == 2.0
    assert s != s.replace(params={"beta": 3, "alpha": 1}) and s.replace() == s
    with pytest.raises((AttributeError, TypeError)):
        s.params["beta"] = 5
