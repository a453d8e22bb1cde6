from scorpion_build.cli.main import main

__all__ = ["main"]
