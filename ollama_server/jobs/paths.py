"""JobPaths: where jobs read datasets and write runs, shards, logs and their queue (the seed's base layout)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ollama_server.settings import Settings


@dataclass(frozen=True)
class JobPaths:
    """<base>/datasets, runs/, train_shards_out/, logs/ and db.sqlite; datasets may live elsewhere."""

    base_dir: Path
    datasets_dir: Path

    @classmethod
    def for_settings(cls, settings: Settings) -> "JobPaths":
        base = Path(settings.base_dir or settings.data_dir).expanduser()
        datasets = Path(settings.datasets_dir).expanduser() if settings.datasets_dir else base / "datasets"
        return cls(base_dir=base, datasets_dir=datasets)

    @property
    def models_dir(self) -> Path:
        """Where checkpoints are copied when no models_dir is configured (the seed's <base>/models)."""
        return self.base_dir / "models"

    @property
    def runs_dir(self) -> Path:
        return self.base_dir / "runs"

    @property
    def shards_dir(self) -> Path:
        return self.base_dir / "train_shards_out"

    @property
    def logs_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def db_path(self) -> Path:
        return self.base_dir / "db.sqlite"

    def eval_run(self, job_id: str) -> Path:
        return self.runs_dir / "eval" / job_id

    def data_gen_run(self, job_id: str) -> Path:
        return self.runs_dir / "data_gen" / job_id

    def ensure(self) -> None:
        """Create every directory (a fresh base works at once; the trainer copies datasets in later)."""
        for path in (self.datasets_dir, self.runs_dir / "eval", self.runs_dir / "data_gen", self.shards_dir,
                     self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
