"""The docs cover what a user can set and run, in the way sqlite-utils checks its CLI reference.

Every list here is read from the code, never written by hand: the ``VOXFLEET_*`` variables are found
by scanning the source and by asking the cloud's config loader which names it looks up; the device
settings are the fields of ``DeviceSettings``; the commands are the Click tree of ``voxfleet`` and the
console scripts of pyproject.toml. Adding any of them without a line in README.md or docs/ fails here.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import click
import pytest
from pydantic import BaseModel, SecretStr

from cloud.config import CloudConfig, load_config
from device.settings import DeviceSettings
from voxfleet.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
CLI_REFERENCE = DOCS / "cli.md"
CONFIGURATION = DOCS / "configuration.md"

ENV_NAME = re.compile(r"\bVOXFLEET_[A-Z0-9]+(?:_[A-Z0-9]+)*\b")
# Where code lives; docs (*.md) and pages (*.html) are what is checked, not where names are found.
SOURCE_DIRS = ("device", "cloud", "protocol", "voxfleet", "skills", "bench", "scripts", "tests", "ansible",
               "firmware-config", ".ci")
SOURCE_SUFFIXES = {".py", ".sh", ".j2", ".yml", ".yaml", ".toml", ".cfg", ".conf", ".service", ".example"}
SKIP_DIRS = {"__pycache__", ".venv", "var", ".git", "node_modules", ".pytest_cache"}


def _doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


@pytest.fixture(scope="module")
def docs_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in _doc_files())


def _source_files() -> Iterator[Path]:
    """Code and scripts, including extensionless ones with a shebang (scripts/demo, ansible files), and
    the files at the top (pyproject.toml)."""
    candidates = sorted(ROOT.glob("*"))
    for top in SOURCE_DIRS:
        candidates += sorted((ROOT / top).rglob("*"))
    for path in candidates:
        if not path.is_file() or SKIP_DIRS.intersection(path.relative_to(ROOT).parts):
            continue
        if path.suffix in SOURCE_SUFFIXES or (not path.suffix and path.read_bytes()[:2] == b"#!"):
            yield path


def variables_in_source() -> set[str]:
    """Every VOXFLEET_* name written in the code (this file excepted: its examples are not config)."""
    names: set[str] = set()
    for path in _source_files():
        if path == Path(__file__).resolve():
            continue
        names.update(ENV_NAME.findall(path.read_text(encoding="utf-8", errors="replace")))
    return names


class _RecordingEnviron(Mapping[str, str]):
    """An empty environment that remembers every name it is asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_the_cloud_loader_reads(tmp_path_factory: pytest.TempPathFactory,
                                     monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The names ``load_config`` looks up, however it builds them (a table today, field names maybe later)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cloud-config"))  # no --data-dir: var/cloud lands here
    environ = _RecordingEnviron()
    load_config(environ=environ)
    return {name for name in environ.asked if name.startswith("VOXFLEET_")}


@pytest.fixture(scope="module")
def loader_variables(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return variables_the_cloud_loader_reads(tmp_path_factory, monkeypatch)


def test_the_cloud_loader_is_asked_by_name(loader_variables):
    # If load_config ever walks os.environ instead of looking names up, the recorder sees nothing
    # and the variables test below would check too little: say so instead of passing quietly.
    assert {"VOXFLEET_DATA_DIR", "VOXFLEET_DATABASE_URL"} <= loader_variables


def _mentioned(name: str, text: str) -> bool:
    return re.search(rf"\b{name}\b", text) is not None


@pytest.mark.parametrize("name", sorted(variables_in_source()))
def test_variable_in_source_is_documented(docs_text, name):
    assert _mentioned(name, docs_text), f"${name} is in the code but appears nowhere in README.md or docs/"


def test_variable_of_the_cloud_loader_is_documented(docs_text, loader_variables):
    missing = sorted(name for name in loader_variables if not _mentioned(name, docs_text))
    assert missing == []


# -- settings tables: one row per field, with the default the code really has ------------------------------

CODE_SPAN = re.compile(r"`([^`]+)`")


def _table(path: Path, first_header: str) -> list[list[str]]:
    """The body rows (cells stripped) of every Markdown table in ``path`` whose first header is given."""
    rows: list[list[str]] = []
    block: list[list[str]] = []
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if block and block[0][0] == first_header:
            rows.extend(block[2:])
        block = []
    assert rows, f"{path.name} has no table whose first column is {first_header!r}"
    return rows


def _row(rows: list[list[str]], field: str) -> list[str] | None:
    """The row whose first cell names ``field`` as code (`name`), if exactly one does."""
    matching = [row for row in rows if field in CODE_SPAN.findall(row[0])]
    assert len(matching) <= 1, f"{field} has {len(matching)} rows"
    return matching[0] if matching else None


def _written_default(model: type[BaseModel], field: str) -> str | None:
    """A field's default as a table writes it, or None where it is computed or not a plain value."""
    info = model.model_fields[field]
    if info.is_required() or info.default_factory is not None:
        return None
    value = info.default
    if value is None or isinstance(value, SecretStr | list | dict | Path):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _first_value(cell: str) -> str:
    """What a default cell says first: its first `code span`, else its first word."""
    spans = CODE_SPAN.findall(cell)
    return spans[0] if spans else (cell.split() or [""])[0].rstrip(",;")


SETTINGS_CASES = [(README, "setting", DeviceSettings, name) for name in DeviceSettings.model_fields]
CLOUD_CASES = [(CONFIGURATION, "key", CloudConfig, name) for name in CloudConfig.model_fields]


@pytest.mark.parametrize(("page", "header", "model", "field"), SETTINGS_CASES + CLOUD_CASES,
                         ids=[f"{case[2].__name__}.{case[3]}" for case in SETTINGS_CASES + CLOUD_CASES])
def test_setting_has_a_row_with_its_default(page, header, model, field):
    row = _row(_table(page, header), field)
    assert row is not None, f"{model.__name__}.{field} has no row in the table of {page.name}"
    expected = _written_default(model, field)
    if expected is not None:
        assert _first_value(row[1]) == expected, f"{field}: the code's default is {expected!r}"


# -- commands: every group and command of `voxfleet`, and every console script ----------------------------

def _commands(command: click.Command = main,
              path: tuple[str, ...] = ("voxfleet",)) -> Iterator[tuple[str, click.Command]]:
    """Every command and group under ``command``, by its full path ("voxfleet cloud admin create-tenant")."""
    yield " ".join(path), command
    if isinstance(command, click.Group):
        context = click.Context(command, info_name=path[-1])
        for name in command.list_commands(context):
            yield from _commands(command.get_command(context, name), (*path, name))


COMMANDS = dict(_commands())
HEADING = re.compile(r"^#+ `([^`]+)`\s*$")


def _reference_sections() -> dict[str, str]:
    """docs/cli.md cut at its headings: the `command` of each heading -> the text below it."""
    sections: dict[str, str] = {}
    current = None
    for line in CLI_REFERENCE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            match = HEADING.match(line)
            current = match.group(1) if match else None
            if current is not None:
                sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


@pytest.fixture(scope="module")
def reference() -> dict[str, str]:
    return _reference_sections()


def _long_options(command: click.Command) -> list[str]:
    return sorted({opt for param in command.params if isinstance(param, click.Option)
                   for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")})


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_has_help(path):
    assert (COMMANDS[path].help or "").strip(), f"`{path} --help` says nothing about what it does"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_is_in_the_reference(reference, path):
    assert path in reference, f"docs/cli.md has no heading `{path}`"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_options_are_in_its_section(reference, path):
    section = reference.get(path, "")
    missing = [opt for opt in _long_options(COMMANDS[path]) if not re.search(rf"{opt}(?![\w-])", section)]
    assert missing == [], f"the section of `{path}` in docs/cli.md does not mention {missing}"


def _console_scripts() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return sorted(tomllib.load(fh)["project"]["scripts"])


@pytest.mark.parametrize("script", _console_scripts())
def test_console_script_is_in_the_reference(reference, script):
    assert script in reference, f"docs/cli.md has no heading `{script}`"


# -- the docs are the repository's own -----------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub makes from a page's headings: lower case, punctuation dropped, spaces to '-'."""
    headings = [line.lstrip("#").strip() for line in page.read_text(encoding="utf-8").splitlines()
                if re.match(r"#{1,6} ", line)]
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", _doc_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if "://" in target or target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part) if file_part else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
            broken.append(target)
    assert broken == []


def test_nothing_points_to_a_design_document_outside_the_repository():
    outside = re.compile(r"shared/DESIGN|DESIGN\.md")
    pages = [*_doc_files(), *(ROOT / "ansible").rglob("README.md"), ROOT / "firmware-config" / "README.md"]
    hits = [f"{path.relative_to(ROOT)}:{number}"
            for path in [*_source_files(), *pages] if path != Path(__file__).resolve()
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if outside.search(line)]
    assert hits == []
