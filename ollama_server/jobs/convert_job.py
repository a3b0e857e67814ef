"""A conversion job: a Hugging Face checkpoint to GGUF with llama.cpp's converter, then registered by its id."""
from __future__ import annotations

from pathlib import Path

from ollama_server.jobs.convert import ConversionCancelled
from ollama_server.jobs.convert import ConversionError
from ollama_server.jobs.convert import convert
from ollama_server.jobs.worker import JobCancelled
from ollama_server.jobs.worker import JobContext
from ollama_server.jobs.worker import JobFailed
from ollama_server.models.store import ModelStore
from ollama_server.models.store import ModelStoreError


def output_path(checkpoint: Path, model_id: str, outtype: str) -> Path:
    """Where the GGUF goes: beside the checkpoint's files, named for the id and type."""
    return checkpoint / f"{model_id.replace(':', '-').replace('/', '-')}.{outtype}.gguf"


def run_convert(ctx: JobContext, store: ModelStore, converter_dir: str) -> dict:
    """Convert (progress 0..1000 per mille), then register the GGUF under the job's model id."""
    config = ctx.config
    checkpoint, outtype = Path(config["checkpoint"]), config["outtype"]
    out = output_path(checkpoint, config["id"], outtype)
    ctx.progress(0, 1000)
    if not out.exists():  # a resumed job whose conversion had finished only registers
        try:
            convert(checkpoint, out, outtype, converter_dir,
                    progress=lambda share: ctx.progress(int(share * 1000), 1000),
                    cancelled=lambda: ctx.stopping.is_set() or ctx.store.cancel_requested(ctx.job_id))
        except ConversionCancelled:
            ctx.check()  # interrupted by the stop (resumes later) or cancelled
            raise JobCancelled() from None
        except ConversionError as exc:
            raise JobFailed(exc.message) from None
    try:
        spec = store.register(config["id"], str(out))
    except ModelStoreError as exc:
        raise JobFailed(f"converted to {out}, but registering it failed: {exc}") from None
    ctx.progress(1000, 1000)
    return {"id": spec.name, "path": str(out), "outtype": outtype, "size_bytes": out.stat().st_size,
            "checkpoint": str(checkpoint)}
