"""Fill-in-the-middle prompts from a model's FIM tokens, laid out as llama-server's /infill does."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from typing import Sequence

from ollama_server.engine.types import CapabilityError
from ollama_server.engine.types import Infill

# The FIM spellings of the families llama.cpp recognises (its vocab loader looks for the same texts when a GGUF
# has no tokenizer.ggml.fim_*_token_id): per role, the first spelling that is one token of the vocabulary wins.
PRE = ("<|fim_prefix|>", "<fim_prefix>", "<｜fim▁begin｜>", "<|fim▁begin|>", "<PRE>", "▁<PRE>", "[PREFIX]")
SUF = ("<|fim_suffix|>", "<fim_suffix>", "<｜fim▁hole｜>", "<|fim▁hole|>", "<SUF>", "▁<SUF>", "[SUFFIX]")
MID = ("<|fim_middle|>", "<fim_middle>", "<｜fim▁end｜>", "<|fim▁end|>", "<MID>", "▁<MID>", "[MIDDLE]")
REP = ("<|repo_name|>", "<repo_name>", "<reponame>")
SEP = ("<|file_sep|>", "<file_sep>", "<|file_separator|>", "<filename>")
REPO_NAME = "myproject\n"     # llama-server's fixed project name for the repo-level layout
CURRENT_FILE = "filename\n"   # and its name for the file being edited
# Between extra chunks when the model has no file separator: "--- snippet ---" as llama-server writes it.
SNIPPET = "\n\n--- snippet ---\n\n"
NO_FIM = ": it has no fill-in-the-middle (FIM) tokens"


@dataclass(frozen=True)
class FimTokens:
    """A model's FIM token ids; `rep` (repository name) and `sep` (file separator) are optional."""

    pre: int
    suf: int
    mid: int
    rep: Optional[int] = None
    sep: Optional[int] = None


def _single_token(model, spellings: Sequence[str]) -> Optional[int]:
    """The id of the first spelling the tokenizer turns into exactly one token that reads back the same."""
    for text in spellings:
        ids = model.tokenize(text, add_special=False)
        if len(ids) == 1 and model.detokenize(ids).strip() == text.lstrip("▁"):
            return ids[0]
    return None


def fim_tokens(model) -> Optional[FimTokens]:
    """The model's FIM tokens found in its vocabulary, or None when it has no prefix/suffix/middle trio."""
    cached = getattr(model, "_fim_tokens", False)
    if cached is not False:
        return cached
    pre, suf, mid = (_single_token(model, role) for role in (PRE, SUF, MID))
    found = None
    if pre is not None and suf is not None and mid is not None:
        found = FimTokens(pre, suf, mid, _single_token(model, REP), _single_token(model, SEP))
    try:  # the vocabulary never changes: look once per loaded model
        model._fim_tokens = found
    except AttributeError:
        pass
    return found


def _text(model, text: str) -> list[int]:
    return model.tokenize(text, add_special=False) if text else []


def _extra_tokens(model, fim: FimTokens, extra: Sequence[tuple[str, str]]) -> list[int]:
    """The other files before the prefix (the repo-level layout of arXiv 2409.12186, as llama-server builds it)."""
    out: list[int] = []
    if fim.rep is not None:
        out += [fim.rep] + _text(model, REPO_NAME)
    for filename, text in extra:
        if fim.sep is not None:
            out += [fim.sep] + _text(model, (filename or "tmp") + "\n")
        else:
            out += _text(model, SNIPPET)
        out += _text(model, text)
    if fim.sep is not None:
        out += [fim.sep] + _text(model, CURRENT_FILE)
    return out


def prompt_tokens(model, infill: Infill) -> list[int]:
    """[BOS] [extra files] PRE prefix prompt SUF suffix MID; CapabilityError("insert") without FIM tokens."""
    fim = fim_tokens(model)
    if fim is None:
        raise CapabilityError("insert", param=infill.field, detail=NO_FIM)
    # BOS where the model wants one: what the tokenizer adds to an empty text.
    out = list(model.tokenize("", add_special=True))
    # The repo-level header only when other files are given: a plain suffix request (OpenAI, Ollama) gets the
    # layout those servers use, PRE prefix SUF suffix MID.
    if infill.extra:
        out += _extra_tokens(model, fim, infill.extra)
    out += [fim.pre] + _text(model, infill.prefix) + _text(model, infill.prompt)
    out += [fim.suf] + _text(model, infill.suffix) + [fim.mid]
    return out
