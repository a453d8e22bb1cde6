"""One definition per setting: the CLI, the pipeline YAML, the library and the docs agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from scorpion_build import settings_docs
from scorpion_build.cli.main import main
from scorpion_build.options import OptionError
from scorpion_build.pipeline import ConfigError, load_config
from scorpion_build.pipeline.config import AnalyzeStage, RegisterStage
from scorpion_build.register import RegisterConfig
from scorpion_build.settings import settings_of
from scorpion_build.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def test_docs_option_tables_are_current():
    stale = settings_docs.stale(REPO)
    assert not stale, (
        f"{[str(p.relative_to(REPO)) for p in stale]}: option tables are stale; run "
        "`python -m scorpion_build.settings_docs`"
    )


def test_a_stale_table_is_rewritten_from_the_settings():
    text = "intro\n<!-- options: export -->\n| old | table |\n<!-- /options -->\nafter\n"
    out = settings_docs.render(text)
    assert "| old | table |" not in out and out.startswith("intro\n") and out.endswith("after\n")
    assert "| `--quality N` | 95 | JPEG quality, 1-100. |" in out
    assert "| `--format jpg\\|png` | jpg |" in out


def test_the_same_mistake_gets_the_same_message_everywhere(tmp_path):
    # library
    with pytest.raises(OptionError, match=r"fine-mpp 0: must be > 0"):
        RegisterConfig(fine_mpp=0)
    # pipeline: the same check, with the key and its line
    path = tmp_path / "p.yaml"
    path.write_text("build: b\nregister:\n  method: robust\n  fine-mpp: 0\n")
    with pytest.raises(ConfigError, match=r"p.yaml:4: 'register.fine-mpp' 0.0: must be > 0"):
        load_config(path)
    # CLI
    result = CliRunner().invoke(main, ["register", str(tmp_path), "--fine-mpp", "0"])
    assert result.exit_code == 2 and "--fine-mpp 0.0: must be > 0" in result.output


@pytest.mark.parametrize(
    ("yaml_keys", "cli_args", "message"),
    [
        ("  classes: c.json\n", ["--classes", "{c}"], "needs 'annotations' as well"),
        ("  roi-class: [tumor]\n", ["--roi-class", "tumor"], "needs 'annotations' as well"),
        (
            "  annotations: ann\n  regions-from: r.csv\n  roi-class: [tumor]\n",
            ["--annotations", "{d}", "--regions-from", "{c}", "--roi-class", "tumor"],
            "cannot be given with 'regions-from'",
        ),
    ],
)
def test_settings_that_need_another_are_refused_alone_everywhere(
    tmp_path, yaml_keys, cli_args, message
):
    """A class list without the annotations it names (or ROI sampling beside given regions)
    is refused before anything runs, by the pipeline (with its line) and by the CLI."""
    path = tmp_path / "p.yaml"
    path.write_text("build: b\nextract:\n" + yaml_keys)
    with pytest.raises(ConfigError, match=rf"p.yaml:\d+: 'extract.[a-z-]+' .*: {message}"):
        load_config(path)
    (tmp_path / "c.json").write_text('["background", "tumor"]')
    build = tmp_path / "build"
    build.mkdir()
    args = [a.format(c=tmp_path / "c.json", d=tmp_path) for a in cli_args]
    result = CliRunner().invoke(main, ["extract", str(build), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (build / "patches.zarr").exists() and not (build / "manifests").exists()


def test_pipeline_stage_shares_the_library_settings():
    assert list(settings_of(RegisterStage)) == ["method", "coarse_mpp", "fine_mpp", "max_blocks"]
    for name, item in settings_of(RegisterStage).items():
        assert item == settings_of(RegisterConfig)[name]
    assert RegisterStage().fine_mpp == RegisterConfig().fine_mpp


def test_analyze_features_default_is_the_same_on_cli_and_in_a_pipeline(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("build: b\nanalyze: {}\n")
    assert load_config(path).analyze.features == "resnet50" == AnalyzeStage().features
    help_text = CliRunner().invoke(main, ["analyze", "--help"]).output
    assert "[default: resnet50]" in help_text


def test_train_help_shows_the_config_defaults():
    help_text = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    for name in ("consistency_weight", "epochs", "batch_size", "num_workers"):
        default = settings_of(TrainConfig)[name].default_text
        assert f"[default: {default}]" in help_text, name


def test_train_options_not_given_leave_the_config_file_in_charge(tmp_path):
    config = tmp_path / "t.yaml"
    config.write_text("data: d\nout: o\nepochs: 3\nbatch_size: 1\n")
    result = CliRunner().invoke(main, ["train", "--config", str(config)])
    # the file's batch_size reached the check (no CLI default overrode it)
    assert result.exit_code == 2 and "batch_size: 1: must be >= 2" in result.output


def test_train_yaml_errors_name_the_key_and_line(tmp_path):
    from scorpion_build.pipeline import ConfigError as PipelineConfigError
    from scorpion_build.train.config import ConfigError, read_yaml_lines

    assert ConfigError is PipelineConfigError  # one error class for every config
    path = tmp_path / "t.yaml"
    path.write_text("train:\n  data: d\n  out: o\n  fda:\n    beta: lots\n")
    raw, lines = read_yaml_lines(path)
    with pytest.raises(ConfigError, match=r"t.yaml:5: 'fda.beta' must be float, got 'lots'"):
        TrainConfig.from_dict(raw, source=str(path), lines=lines)
    path.write_text("data: d\nout: o\nepochs: 3\nlearning_rate: 1\n")
    result = CliRunner().invoke(main, ["train", "--config", str(path)])
    assert result.exit_code == 2 and f"{path}:4: unknown key 'learning_rate'" in result.output


def test_extract_settings_are_the_library_config_plus_its_inputs(tmp_path):
    from scorpion_build.extract import ExtractConfig
    from scorpion_build.pipeline.config import ExtractStage
    from scorpion_build.pipeline.stages import extract_config

    path = tmp_path / "p.yaml"
    path.write_text("build: b\nextract:\n  regions: 3\n  compression: lz4\n")
    with pytest.raises(ConfigError, match=r"p.yaml:4: 'extract.compression' 'lz4': choose one"):
        load_config(path)
    path.write_text("build: b\nextract:\n  regions: 3\n  annotations: a\n  roi-class: tumour\n")
    config = load_config(path)
    assert extract_config(config) == ExtractConfig(regions=3)
    assert ExtractStage().size == ExtractConfig().size and config.extract.roi_class == ["tumour"]
    result = CliRunner().invoke(main, ["extract", str(tmp_path), "--size", "8"])
    assert result.exit_code == 2 and "--size 8: must be >= 16" in result.output
