"""The whole build from one YAML file: scan, register, extract, export, benchmark, analyze."""

from scorpion_build.pipeline.config import ConfigError, PipelineConfig, load_config
from scorpion_build.pipeline.runner import StageResult, run_pipeline

__all__ = ["ConfigError", "PipelineConfig", "StageResult", "load_config", "run_pipeline"]
