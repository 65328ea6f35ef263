"""The documentation: the MkDocs site builds without a warning, docstring examples run, public names are documented.

The site build is what `make docs` does, into a temporary folder; it takes seconds (no MD, no training).
"""
import doctest
import importlib
import inspect
import io
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cvplug", "cvplug.plugins", "cvplug.systems")


def test_site_builds_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "docs" / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    problems = [line for line in log.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0 and not problems, "mkdocs build --strict failed:\n" + ("\n".join(problems) or log)
    site = tmp_path / "site"
    for page in ("index.html", "cli/index.html", "methods/plugin/index.html", "api/cvplug.methods/index.html"):
        assert (site / page).is_file(), page
    cli = (site / "cli" / "index.html").read_text()
    assert all(f'id="{command}"' in cli for command in ("simulate", "bias", "learn", "demo", "info", "methods"))


def _modules(package: str) -> tuple[list, list[str]]:
    """The modules of ``package`` (not those of the other roots in PACKAGES) and the import errors met."""
    errors: list[str] = []
    root = importlib.import_module(package)
    modules = [root]
    others = tuple(p + "." for p in PACKAGES if p != package and p.startswith(package + "."))
    for info in pkgutil.walk_packages(root.__path__, package + ".", onerror=lambda name: errors.append(name)):
        if info.name.startswith(others):
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as error:  # report every module that does not import, not just the first
            errors.append(f"{info.name}: {type(error).__name__}: {error}")
    return modules, errors


@pytest.mark.parametrize("package", PACKAGES)
def test_docstring_examples_run(package):
    modules, errors = _modules(package)
    failures = [f"cannot import {error}" for error in errors]
    finder = doctest.DocTestFinder()
    for module in modules:
        for test in finder.find(module, module.__name__):
            if not test.examples:
                continue
            report = io.StringIO()
            result = doctest.DocTestRunner().run(test, out=report.write, clear_globs=True)
            if result.failed:
                failures.append(f"{module.__name__}: {test.name}: {result.failed} of {result.attempted} examples "
                                f"failed\n{report.getvalue()}")
    assert not failures, "\n".join(failures)


def _public(module) -> list[tuple[str, object]]:
    """Public functions and classes of a module: its ``__all__``, else the names it defines without a leading _;
    only those defined in cvplug."""
    if hasattr(module, "__all__"):
        names = list(module.__all__)
    else:
        names = [n for n, obj in vars(module).items()
                 if not n.startswith("_") and getattr(obj, "__module__", None) == module.__name__]
    objects = [(n, getattr(module, n, None)) for n in names]
    # functions and classes of cvplug's own (a re-exported third-party class such as openmmtorch's is not ours)
    return [(n, obj) for n, obj in objects if (inspect.isfunction(obj) or inspect.isclass(obj))
            and (getattr(obj, "__module__", None) or "").split(".")[0] == "cvplug"]


def _documented(obj) -> bool:
    doc = obj.__doc__
    if not doc or not doc.strip():
        return False
    # dataclasses and named tuples get a generated "Name(field, ...)" docstring: that is no documentation
    return not (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("))


@pytest.mark.parametrize("package", PACKAGES)
def test_public_names_have_docstrings(package):
    modules, errors = _modules(package)
    missing = [f"{module.__name__}.{name}" for module in modules for name, obj in _public(module)
               if not _documented(obj)]
    assert not errors and not missing, (f"{len(missing)} public functions/classes without a docstring:\n"
                                        + "\n".join(missing) + "".join(f"\ncannot import {e}" for e in errors))


def test_plugin_page_example_runs(tmp_path, monkeypatch):
    """The complete example of "Writing a method plugin" runs as printed (its Python blocks, in order)."""
    import re

    page = (ROOT / "docs" / "pages" / "methods" / "plugin.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", page, re.S))
    monkeypatch.chdir(tmp_path)
    output = io.StringIO()
    monkeypatch.setattr(sys, "stdout", output)
    exec(compile(code, "docs/pages/methods/plugin.md", "exec"), {"__name__": "plugin_example"})
    assert output.getvalue().strip() == "['pc0', 'pc1']"
    assert (tmp_path / "pca.pt").is_file()


def test_readme_is_short_and_agrees_with_ci():
    """README.md: at most 200 lines, shows the two commands, CI runs exactly its test command, links resolve."""
    import re

    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    commands = re.findall(r"^(make \w+)\s+#", readme, re.M)
    assert commands[:2] == ["make demo", "make test"], commands
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert ci == ["make test"], ci
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme):
        if not re.match(r"^[a-z]+:", target):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
