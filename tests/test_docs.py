"""The docs cannot drift: every command and Python snippet in README.md and docs/*.md is tagged,
every ``scorpion-build`` line names real commands and options, and the blocks tagged ``run``
run here on a small labelled build (the ``labelled`` session fixture, copied per docs page).

Tags are an HTML comment on the line before a fence (invisible on GitHub)::

    <!-- doc-test: run -->              runs here (sh: bash, one block after another; python:
                                        one namespace per page, blocks in page order)
    <!-- doc-test: skip REASON -->      not run, REASON says why (a download, a GPU, a cluster,
                                        the real SCORPION slides, minutes of training)

Blocks that are not commands or code (outputs, trees, formulas, CSV, YAML) say so with their
info string (``text``, ``csv``, ``yaml``). Inside the run directory ``demo_build`` and
``BUILD`` are the build; ``runs/*/best.pt`` a small untrained checkpoint in ``train``'s format.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TAG = re.compile(r"^\s*<!--\s*doc-test:\s*(run|skip)\b\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
CODE = {"sh", "python"}  # blocks that must carry a tag
TEXT = {"text", "csv", "yaml"}  # not commands: no tag needed
CHECKPOINTS = ("runs/simcons/best.pt", "runs/at2_p1000/best.pt")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    tag: str | None  # "run", "skip" or None
    reason: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page with their doc-test tags."""
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, lang = opening.group(1), opening.group(2)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : end]]
        above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        tag = TAG.match(above)
        found.append(
            Block(
                page,
                i + 1,
                lang,
                tag.group(1) if tag else None,
                tag.group(2) if tag else "",
                "\n".join(body) + "\n",
            )
        )
        i = end + 1
    return found


ALL = [b for page in PAGES for b in blocks(page)]


def test_every_snippet_is_tagged_and_every_skip_says_why():
    wrong = []
    for b in ALL:
        if b.lang not in CODE | TEXT:
            wrong.append(f"{b.where}: info string {b.lang!r}; use one of {sorted(CODE | TEXT)}")
        elif b.lang in CODE and b.tag is None:
            wrong.append(f"{b.where}: {b.lang} block without a <!-- doc-test: ... --> tag")
        elif b.tag == "skip" and not b.reason:
            wrong.append(f"{b.where}: doc-test skip without a reason")
        elif b.lang in TEXT and b.tag == "run":
            wrong.append(f"{b.where}: a {b.lang} block cannot run")
    assert not wrong, "\n".join(wrong)
    assert sum(b.tag == "run" for b in ALL) >= 20, "most snippets should run"


# -- every scorpion-build line, run or not, names a real command and real options ----------------
def command_lines(code: str) -> list[list[str]]:
    """The ``scorpion-build`` invocations of a shell block (or a synopsis), as words."""
    joined = re.sub(r"\\\n", " ", code)
    out = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith("scorpion-build "):
            words = line.split()  # synopses hold [..] and (a | b): no shell quoting rules
            out.append(words[1:])
    return out


def _options(command) -> dict[str, object]:  # noqa: ANN001
    """``{option name: its Click parameter}`` of a command (or the group)."""
    names: dict[str, object] = {"--help": None, "-h": None}
    for param in command.params:
        for name in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            names[name] = param
    return names


def _wrong_words(words: list[str], known: dict[str, object], head: str) -> list[str]:
    """Unknown options, and literal values outside an option's choices (placeholders such as
    ``DIR`` or ``jpg|png`` are not checked)."""
    import click

    wrong = []
    for k, word in enumerate(words):
        option = re.match(r"^\[?(--?[a-z][a-z0-9-]*)(?:=(.*))?", word)
        if not option:
            continue
        name = option.group(1)
        if name not in known:
            wrong.append(f"{head} has no {name}")
            continue
        param = known[name]
        value = option.group(2) or (words[k + 1] if k + 1 < len(words) else "")
        literal = re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", value)
        choice = isinstance(getattr(param, "type", None), click.Choice)
        if choice and literal and value not in param.type.choices:
            wrong.append(f"{head} {name} {value}: not one of {list(param.type.choices)}")
    return wrong


def test_every_scorpion_build_line_names_a_real_command_and_options():
    import click

    from scorpion_build.cli.main import main

    ctx = click.Context(main)
    wrong, seen = [], 0
    for b in ALL:
        for words in command_lines(b.code):
            seen += 1
            head = next((w for w in words if not w.startswith("-")), "")
            command = main.get_command(ctx, head) if head else None
            known = {**_options(main), **(_options(command) if command else {})}
            if command is None and words[0] not in known:
                wrong.append(f"{b.where}: no command {' '.join(words[:2])!r}")
                continue
            wrong += [f"{b.where}: {w}" for w in _wrong_words(words, known, head)]
    assert seen >= 40, seen
    assert not wrong, "\n".join(wrong)


def test_pipeline_yaml_blocks_load(tmp_path):
    """A YAML block with a top-level ``build:`` is a pipeline: it must pass ``run``'s checks
    (every key known, every value valid), so a renamed option cannot linger in the docs."""
    from scorpion_build.pipeline.config import load_config

    pipelines = [b for b in ALL if b.lang == "yaml" and re.search(r"^build:", b.code, re.M)]
    assert len(pipelines) >= 3
    for b in pipelines:
        path = tmp_path / f"{b.page.stem}_{b.line}.yaml"
        path.write_text(b.code)
        try:
            load_config(path)
        except Exception as exc:
            pytest.fail(f"{b.where}: {type(exc).__name__}: {exc}")


# -- the runnable blocks ---------------------------------------------------------------------------
def _page_params(lang: str) -> list:
    pages = sorted({b.page for b in ALL if b.lang == lang and b.tag == "run"})
    return [pytest.param(p, id=str(p.relative_to(ROOT))) for p in pages]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, labelled) -> Path:
    """An untrained U-Net (resnet18) in ``train``'s checkpoint format (best.pt + best.json)."""
    import torch
    import zarr

    from scorpion_build.models import build_model, save_checkpoint

    folder = tmp_path_factory.mktemp("ckpt")
    group = zarr.open_group(str(labelled["build"] / "patches.zarr"), mode="r")
    classes = list(group["labels"].attrs["classes"])
    torch.manual_seed(0)
    model = build_model("resnet18", len(classes), "unet")
    config = {"arch": "unet", "encoder": "resnet18", "classes": classes}
    save_checkpoint(model, {**config, "mpp": float(group.attrs["mpp"])}, folder / "best.pt")
    return folder / "best.pt"


@pytest.fixture
def rundir(tmp_path, labelled, checkpoint, monkeypatch) -> Path:
    """A fresh working directory for one page's snippets: ``demo_build`` (a copy of the small
    build) under the names the docs give a build, its synthetic slides as a ``my_slides``
    folder, ``slides.csv`` and ``slide.svs``, and the checkpoints the docs name."""
    shutil.copytree(labelled["build"], tmp_path / "demo_build", symlinks=True)
    for name in ("BUILD", "build", "published_build"):
        (tmp_path / name).symlink_to("demo_build")
    synth = labelled["synth"]
    mine = tmp_path / "my_slides" / "synth_000"  # the folder layout of own-dataset.md
    mine.mkdir(parents=True)
    for f in (synth / "synth_000").iterdir():
        if f.stem != "P1000":  # synth writes it without mpp: only a slide table can scan it
            (mine / f.name).symlink_to(f)
    (tmp_path / "slides.csv").write_text(  # the table's relative paths, from here
        (synth / "slides.csv").read_text().replace(",synth_", f",{synth}/synth_")
    )
    (tmp_path / "slide.svs").symlink_to(synth / "synth_000" / "AT2.svs")
    for name in CHECKPOINTS:
        (tmp_path / name).parent.mkdir(parents=True)
        for f in (checkpoint, checkpoint.with_suffix(".json")):
            (tmp_path / name).parent.joinpath(f.name).symlink_to(f)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _reader_names() -> dict:
    """Names the docs leave to the reader: ``model``/``example`` (any torch module and an input
    for it), ``my_predict`` (RGB patch -> class indices), ``img``/``patch_to_img``/``w``/``h``
    (an image and an affine to warp it with), ``M_cv`` (an OpenCV affine)."""
    import torch

    from scorpion_build import geometry as geo

    return {
        "model": torch.nn.Conv2d(3, 3, 1),
        "example": torch.zeros(1, 3, 64, 64),
        "my_predict": lambda rgb: (rgb[..., 0] > 128).astype(np.uint8),
        "img": np.zeros((64, 48, 3), np.uint8),
        "patch_to_img": geo.scaling(0.5),
        "w": 32,
        "h": 24,
        "M_cv": geo.to_opencv(geo.scaling(2.0)),
        "__name__": "__doc_snippet__",
    }


@pytest.mark.parametrize("page", _page_params("python"))
def test_python_snippets_run(page, rundir):
    namespace = _reader_names()
    for b in blocks(page):
        if b.lang == "python" and b.tag == "run":
            try:
                exec(compile(b.code, b.where, "exec"), namespace)  # noqa: S102
            except Exception as exc:
                pytest.fail(f"{b.where}: {type(exc).__name__}: {exc}\n{b.code}")


@pytest.mark.parametrize("page", _page_params("sh"))
def test_shell_snippets_run(page, rundir):
    """Each ``scorpion-build`` line of a run block, in page order, in this process (no
    interpreter start per line; a run block holds nothing else)."""
    from click.testing import CliRunner

    from scorpion_build.cli.main import main

    for b in blocks(page):
        if b.lang != "sh" or b.tag != "run":
            continue
        lines = [ln.split(" #")[0].strip() for ln in re.sub(r"\\\n", " ", b.code).splitlines()]
        for line in filter(None, lines):
            words = shlex.split(line)
            assert words[0] == "scorpion-build", f"{b.where}: a run block holds only commands"
            result = CliRunner().invoke(main, words[1:])
            assert result.exit_code == 0, (
                f"{b.where}: `{line}` exited {result.exit_code}:\n" + (result.output[-3000:])
            )
