"""The public Python API: every name in `digitlab.__all__` resolves, is documented, and stays
lazy; the optional extras are named in the error when their packages are missing."""

import subprocess
import sys

import pytest

import digitlab
from digitlab.cli import main


@pytest.mark.parametrize("name", [n for n in digitlab.__all__ if n != "__version__"])
def test_every_exported_name_resolves_and_is_documented(name):
    value = getattr(digitlab, name)
    assert callable(value)
    assert len((value.__doc__ or "").strip()) > 20, f"digitlab.{name} needs a docstring"


def test_api_names_stay_functions_after_their_modules_are_imported():
    """No module is named like a function of the API, so importing the modules (which binds
    them on the package) never hides a function."""
    from digitlab.evaluation import Evaluation  # noqa: F401  (binds the submodules on the package)
    from digitlab.training import RunResult  # noqa: F401

    assert digitlab.train.__module__ == "digitlab.training.run" and callable(digitlab.train)
    assert digitlab.evaluate.__module__ == "digitlab.evaluation" and callable(digitlab.evaluate)
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(digitlab.__path__)}
    assert not modules & set(digitlab.__all__)


def test_import_digitlab_loads_neither_torch_nor_matplotlib():
    code = "import sys, digitlab; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        digitlab.nope  # noqa: B018


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out == f"digitlab {digitlab.__version__}\n"


def test_serve_without_its_extra_names_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # what `import fastapi` sees if missing
    monkeypatch.delitem(sys.modules, "digitlab.serve", raising=False)
    assert main(["serve"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "digitlab: digitlab serve needs the fastapi package, which is not installed: "
        "install digitlab[serve] to use it (pip install 'digitlab[serve]')"
    )


@pytest.mark.parametrize("package", ["onnx", "onnxruntime"])
def test_onnx_without_the_export_extra_names_it(package, monkeypatch, tmp_path, capsys):
    from digitlab.pretrained import PACKAGED_MODEL

    monkeypatch.setitem(sys.modules, package, None)
    out = tmp_path / "model.onnx"
    assert main(["export", str(PACKAGED_MODEL), "--format", "onnx", "--out", str(out)]) == 1
    assert "install digitlab[export] to use it" in capsys.readouterr().err
    assert main(["predict", "--index", "0", "--runtime", "onnx"]) == 1
    assert "install digitlab[export] to use it" in capsys.readouterr().err
    assert not out.exists()


def test_all_lists_exactly_the_lazy_names():
    assert set(digitlab.__all__) == {"__version__", *digitlab._API}
