"""MkDocs hooks that generate the pages which must not be copied by hand.

- ``cli.md``: the command-line reference, written from :func:`cvplug.cli.build_parser` (every subcommand, its
  usage and each option with its default and help text);
- ``api/<module>.md``: one mkdocstrings page per public module of ``cvplug``, ``cvplug.plugins`` and
  ``cvplug.systems``, found from the package mapping in ``pyproject.toml``;
- ``reproductions/<method>/README.md``: the reproduction notes in ``benchmarks/reproductions/<method>/``, with the
  files beside them; links that point elsewhere in the repository become plain paths;
- in hand-written pages, ``<!-- method-options: NAME -->`` becomes the options table of the registered method
  NAME and ``<!-- reproduction: NAME -->`` a link to its reproduction notes;
- on API pages, the Sphinx roles of the docstrings (``:class:``, ``:func:`` …) are dropped before their code spans.

``plugins/`` and ``systems/`` are installed as ``cvplug.plugins`` and ``cvplug.systems`` (setuptools
``package-dir``); griffe, which mkdocstrings uses to read the sources, looks for ``cvplug/plugins/``, so the
hook copies the three source folders into one ``cvplug/`` tree in a temporary folder and points mkdocstrings at it.
"""
from __future__ import annotations

import argparse
import inspect
import logging
import os
import re
import shutil
import tempfile
import tomllib
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
REPRODUCTIONS = ROOT / "benchmarks" / "reproductions"
_SOURCES: list[Path] = []
_MODULES: list[str] = []  # the documented modules, listed once per build so nav and pages agree


def package_dirs() -> dict[str, Path]:
    """Import package → source folder, from ``[tool.setuptools] package-dir`` in pyproject.toml."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {name: ROOT / folder for name, folder in pyproject["tool"]["setuptools"]["package-dir"].items()}


def public_modules() -> list[str]:
    """Every module under the mapped packages whose dotted name has no part starting with ``_``."""
    modules = set()
    for package, folder in package_dirs().items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if "__pycache__" in parts or any(p.startswith("_") for p in parts):
                continue
            if not all((folder.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(len(parts) + 1)
                       if folder.joinpath(*parts[:i]).is_dir()):
                continue  # not inside a package (a folder without __init__.py)
            name = ".".join((package, *parts))
            # a mapped subpackage (cvplug.plugins) is documented from its own folder, not its parent's
            if not any(name.startswith(other + ".") or name == other for other in package_dirs()
                       if other != package and other.startswith(package + ".")):
                modules.add(name)
    return sorted(modules)


@event_priority(100)  # before mkdocstrings reads its handler options
def on_config(config):
    """Copy the sources into one ``cvplug/`` tree for griffe, list the modules once, add the generated nav."""
    source = Path(tempfile.mkdtemp(prefix="cvplug-docs-src-"))
    _SOURCES.append(source)
    for package, folder in package_dirs().items():
        shutil.copytree(folder, source.joinpath(*package.split(".")),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "data"))
    config.plugins["mkdocstrings"].config.handlers.setdefault("python", {})["paths"] = [str(source)]
    _MODULES[:] = public_modules()
    _report_repository_paths(source)
    config.nav = [*config.nav, {"API reference": api_nav()}, {"Reproductions": reproduction_nav()}]
    return config


def on_shutdown():
    """Restore the log record factory and remove the temporary source trees."""
    logging.setLogRecordFactory(_RECORD_FACTORY)
    while _SOURCES:
        shutil.rmtree(_SOURCES.pop(), ignore_errors=True)


_RECORD_FACTORY = logging.getLogRecordFactory()


def _report_repository_paths(source: Path) -> None:
    """Make log messages (griffe's docstring warnings) name the repository's files, not the temporary copies."""
    copies = sorted(((str(source.joinpath(*package.split("."))), str(folder))
                     for package, folder in package_dirs().items()), key=lambda pair: -len(pair[0]))

    def repository_path(text):
        if isinstance(text, str):
            for copy, folder in copies:
                text = text.replace(copy, folder)
        return text

    def factory(*args, **kwargs):
        record = _RECORD_FACTORY(*args, **kwargs)
        record.msg = repository_path(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(repository_path(a) for a in record.args)
        return record

    logging.setLogRecordFactory(factory)


def api_nav() -> list:
    """The API reference section of the nav: one page per module, grouped by subpackage."""
    groups: dict[str, list] = {}
    for module in _MODULES:
        parts = module.split(".")
        group = "cvplug" if len(parts) < 2 or parts[1] not in ("metad", "plugins", "systems", "bridge", "metrics") \
            else f"cvplug.{parts[1]}"
        groups.setdefault(group, []).append({module: f"api/{module}.md"})
    return [{group: pages} for group, pages in groups.items()]


def reproduction_notes() -> list[Path]:
    """The ``benchmarks/reproductions/<method>/README.md`` files that exist."""
    return sorted(REPRODUCTIONS.glob("*/README.md")) if REPRODUCTIONS.is_dir() else []


def reproduction_nav() -> list:
    """The Reproductions section of the nav: one page per method with notes."""
    return [{readme.parent.name: f"reproductions/{readme.parent.name}/README.md"} for readme in reproduction_notes()]


def on_files(files, config):
    """Add the generated pages: the CLI reference, the API pages, the reproduction notes and their files."""
    def add(uri: str, content=None, abs_src_path=None):
        files.append(File.generated(config, uri, content=content, abs_src_path=abs_src_path))

    add("cli.md", content=cli_reference())
    for module in _MODULES:
        add(f"api/{module}.md", content=f"# `{module}`\n\n::: {module}\n")
    for readme in reproduction_notes():
        for path in readme.parent.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                add(f"reproductions/{path.relative_to(REPRODUCTIONS).as_posix()}", abs_src_path=str(path))
    return files


def on_page_markdown(markdown, page, config, files):
    """Fill the option-table and reproduction markers; rewrite links out of the reproduction notes."""
    markdown = re.sub(r"<!-- method-options: (\S+) -->", lambda m: options_table(m.group(1)), markdown)
    markdown = re.sub(r"<!-- reproduction: (\S+) -->", lambda m: reproduction_link(m.group(1), page), markdown)
    if page.file.src_uri.startswith("reproductions/"):
        markdown = _repository_links(markdown, REPRODUCTIONS / Path(page.file.src_uri).relative_to("reproductions"))
    return markdown


def on_page_content(html, page, config, files):
    """Docstrings use Sphinx roles (``:class:`X```), which Markdown leaves as text before the code span: drop them."""
    if page.file.src_uri.startswith("api/"):
        html = re.sub(r":(?:class|func|meth|mod|data|attr|exc|obj):(<code>)~?\.?", r"\1", html)
    return html


def reproduction_link(method: str, page) -> str:
    """A link from ``page`` to the reproduction notes of ``method``, or a line saying there are none yet."""
    readme = REPRODUCTIONS / method / "README.md"
    if not readme.is_file():
        return f"No reproduction notes for `{method}` yet (`benchmarks/reproductions/{method}/` is empty)."
    depth = len(Path(page.file.src_uri).parent.parts)
    target = "../" * depth + f"reproductions/{method}/README.md"
    return (f"The reproduction of the paper's results, with the measured tables and the command behind each: "
            f"[reproductions/{method}]({target}) (`benchmarks/reproductions/{method}/`).")


def _repository_links(markdown: str, page_path: Path) -> str:
    """Keep links that resolve inside the rendered reproduction folders; write the others as repository paths."""
    def fix(match):
        text, target = match.group(1), match.group(2)
        if re.match(r"^[a-z]+:|^#|^/", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = Path(os.path.normpath(page_path.parent / path))  # no symlink resolution: repository paths
        try:
            inside = resolved.relative_to(REPRODUCTIONS)
        except ValueError:
            inside = None
        if inside is not None and resolved.is_file() and any(r.parent in resolved.parents for r in reproduction_notes()):
            return match.group(0)
        try:
            shown = resolved.relative_to(ROOT).as_posix()
        except ValueError:
            shown = target
        return f"{text} (`{shown}`)" if text.strip("`") != shown else f"`{shown}`"

    return re.sub(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)", fix, markdown)


def options_table(name: str) -> str:
    """Markdown table of a registered method's options: name, default, and the description its docstring gives."""
    from cvplug import methods

    method = methods.get(name)
    described = _documented_parameters(method)
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for option, default in method.options().items():
        if option in methods.RUN_OPTIONS:
            continue
        shown = "required" if default is inspect.Parameter.empty else f"`{default!r}`"
        rows.append(f"| `{option}` | {shown} | {_cell(described.get(option, ''))} |")
    return (f"Options of `{method.__module__}.{method.__qualname__}` (`cvplug methods`; `--option KEY=VALUE` on the "
            f"command line, keywords in Python), generated from the class:\n\n" + "\n".join(rows) + "\n")


def _documented_parameters(method) -> dict[str, str]:
    """Option descriptions (first sentence) from ``name : description`` lines: in the class docstring, then in the
    docstrings of the objects it refers to (``:class:`Settings```, ``:func:`fit_vae```), then in its bases'."""
    import sys

    own = inspect.getdoc(method) or ""
    namespace = vars(sys.modules[method.__module__])
    referred = [namespace.get(name.split(".")[-1]) for name in re.findall(r":(?:class|func):`~?\.?([\w.]+)`", own)]
    texts = [own, *(inspect.getdoc(obj) or "" for obj in referred if obj is not None),
             *(inspect.getdoc(klass) or "" for klass in method.__mro__[1:] if "__doc__" in vars(klass))]
    found: dict[str, str] = {}
    for text in texts:
        for name, description in _name_colon_lines(text).items():
            found.setdefault(name, description)
    return found


def _name_colon_lines(text: str) -> dict[str, str]:
    """``name : description`` entries of a docstring (numpy ``Parameters`` style, several names may share one, two
    entries may share a line), continuation lines indented; each description cut to its first sentence."""
    entries: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line[:1].isspace():
            for name in current:
                entries[name].append(line.strip())
            continue
        current = []
        for part in re.split(r"\s{2,}(?=[A-Za-z_][\w, ]* : )", line.strip()):
            match = re.match(r"^([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*) : (.*)$", part)
            if match:
                current = match.group(1).split(", ")
                for name in current:
                    entries[name] = [match.group(2)]
    described = {}
    for name, lines in entries.items():
        sentence = re.split(r"(?<=\.)\s", " ".join(lines), maxsplit=1)[0]
        described[name] = re.sub(r":\w+:`~?\.?([^`]+)`", r"`\1`", sentence).replace("``", "`")
    return described


def cli_reference() -> str:
    """The CLI reference page, written from the argparse parser."""
    from cvplug.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    lines = ["# Command-line reference", "",
             "Generated from `cvplug.cli.build_parser()` when the site is built; `cvplug COMMAND --help` prints the "
             "same.", "", f"```\n{_usage(parser)}```", "", "| command | what it does |", "|---|---|"]
    lines += [f"| [`{name}`](#{name}) | {helps[name]} |" for name in commands.choices]
    for name, sub in commands.choices.items():
        lines += ["", f"## {name}", "", helps[name][:1].upper() + helps[name][1:] + ".", "", f"```\n{_usage(sub)}```"]
        for group in sub._action_groups:
            actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
            if not actions:
                continue
            title = "arguments" if group.title in ("options", "positional arguments") else group.title
            lines += ["", f"**{title}**", "", "| argument | meaning |", "|---|---|"]
            lines += [_argument_row(sub, action) for action in actions]
    return "\n".join(lines) + "\n"


def _usage(parser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help()


def _argument_row(parser, action) -> str:
    formatter = parser._get_formatter()
    names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.option_strings and action.nargs != 0:
        names += f" `{formatter._format_args(action, formatter._get_default_metavar_for_optional(action))}`"
    help_text = formatter._expand_help(action) if action.help else ""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        help_text += f" (one of {', '.join(f'`{c}`' for c in action.choices)})"
    if action.default not in (None, argparse.SUPPRESS) and action.nargs != 0 and "default" not in help_text:
        help_text += f" (default `{action.default}`)"
    return f"| {names} | {_cell(help_text)} |"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")
