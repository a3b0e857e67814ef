"""Embeddings per second for 256 short inputs on the bundled model in-process: batched vs one by one."""
from __future__ import annotations

import argparse
import tempfile
import time

from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.embeddings import fit
from ollama_server.engine.embeddings import normalize
from ollama_server.engine.embeddings import pack
from ollama_server.engine.llama_backend import LlamaBackend
from ollama_server.models.default_model import ensure_default_model


def run(count: int, threads: int) -> dict:
    """Time `count` short inputs packed into shared decodes, then the same inputs one decode each."""
    path = ensure_default_model(tempfile.gettempdir() + "/ollama_server_bench")
    model = LlamaBackend().load(str(path), LoadOptions(n_ctx=1024, n_slots=1, n_threads=threads))
    try:
        shape = model.embedding_shape()
        texts = [f"short input number {i}" for i in range(count)]
        sequences, _ = fit(model, texts, shape.max_batch_tokens, truncate=True)
        model.embed_batch([sequences[0]])  # the embedding context is created on first use: not timed
        results = {}
        for mode in ("batched", "one_by_one"):
            groups = pack(sequences, shape) if mode == "batched" else [[i] for i in range(count)]
            before = model.embed_decodes
            started = time.perf_counter()
            for group in groups:
                for vector in model.embed_batch([sequences[i] for i in group]):
                    normalize(vector)
            elapsed = time.perf_counter() - started
            results[mode] = {"seconds": round(elapsed, 2), "decodes": model.embed_decodes - before,
                             "embeddings_per_s": round(count / elapsed, 1)}
        results["tokens"] = sum(map(len, sequences))
        return results
    finally:
        model.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results = run(args.count, args.threads)
    print(f"{args.count} inputs, {results['tokens']} tokens")
    for mode in ("batched", "one_by_one"):
        r = results[mode]
        print(f"{mode:>10}: {r['embeddings_per_s']:7.1f} embeddings/s  ({r['seconds']} s, {r['decodes']} decodes)")


if __name__ == "__main__":
    main()
