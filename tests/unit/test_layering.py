"""The import contract: one module touches llama.cpp, the engine knows nothing of HTTP, dialects only translate."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ollama_server"


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if (PACKAGE.parent / node.module.replace(".", "/")).is_dir():  # `from package import module`
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    """`module imports name` for every import under `folder` that starts with a forbidden prefix."""
    return [f"{path.relative_to(PACKAGE)} imports {name}" for path in modules(folder)
            for name in sorted(imports_of(path)) if name.startswith(forbidden)]


def test_only_the_llama_backend_modules_and_the_draft_model_import_llama_cpp():
    users = [p.relative_to(PACKAGE).as_posix() for p in modules()
             if any(name == "llama_cpp" or name.startswith("llama_cpp.") for name in imports_of(p))]
    assert users == ["engine/build_info.py", "engine/draft_model.py", "engine/llama_backend.py",
                     "engine/llama_embedder.py", "engine/llama_log.py", "engine/llama_scorer.py"]


def test_the_engine_knows_nothing_of_http_or_dialects():
    assert offenders("engine", ("flask", "werkzeug", "ollama_server.api", "ollama_server.services")) == []


def test_dialects_never_import_llama_cpp_or_the_backend():
    assert offenders("api", ("llama_cpp", "ollama_server.engine.llama_backend")) == []


def dotted(path: Path) -> str:
    name = "ollama_server." + path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
    return name.removesuffix(".__init__")


# What a dialect may use from the engine: its types and values, never its machinery (pool, runner, backend).
ENGINE_FOR_DIALECTS = {"ollama_server.engine", "ollama_server.engine.types", "ollama_server.engine.generation",
                       "ollama_server.engine.snapshot", "ollama_server.engine.records",
                       "ollama_server.engine.planner", "ollama_server.engine.placement",
                       "ollama_server.engine.build_info"}  # versions and llama.cpp's build facts, for /diag


def test_dialects_use_engine_types_and_services_only():
    for path in modules("api"):
        for name in imports_of(path):
            if name.startswith("ollama_server.engine"):
                assert name in ENGINE_FOR_DIALECTS, f"{path.relative_to(PACKAGE)} imports {name}"


def test_the_engine_never_imports_monitoring_storage_or_the_dashboard():
    assert offenders("engine", ("ollama_server.monitoring", "ollama_server.storage", "ollama_server.dashboard")) == []


def test_monitoring_imports_nothing_from_api():
    assert offenders("monitoring", ("ollama_server.api", "ollama_server.dashboard", "flask")) == []


def test_models_know_nothing_of_http():
    assert offenders("models", ("flask", "werkzeug", "ollama_server.api", "ollama_server.services")) == []


def test_nothing_imports_the_dashboard():
    for path in modules():
        if dotted(path).startswith("ollama_server.dashboard") or dotted(path) == "ollama_server":
            continue  # the dashboard itself, and the factory that registers it
        for name in imports_of(path):
            assert not name.startswith("ollama_server.dashboard"), f"{path.relative_to(PACKAGE)} imports {name}"


# What a dialect may use from the model layer: value types and pure helpers; changes go through the store.
MODELS_FOR_DIALECTS = {"ollama_server.models", "ollama_server.models.catalogue", "ollama_server.models.inspect",
                       "ollama_server.models.names", "ollama_server.models.gguf", "ollama_server.models.store",
                       "ollama_server.models.pull_source"}


def test_dialects_change_models_only_through_the_store():
    for folder in ("api/openai", "api/ollama", "api/tgi", "api/vllm"):
        for path in modules(folder):
            for name in imports_of(path):
                if name.startswith("ollama_server.models"):
                    assert name in MODELS_FOR_DIALECTS, f"{path.relative_to(PACKAGE)} imports {name}"
                assert not name.startswith(("ollama_server.monitoring", "ollama_server.storage")), \
                    f"{path.relative_to(PACKAGE)} imports {name}"


ENGINE_FOR_JOBS = {"ollama_server.engine.engine", "ollama_server.engine.types"}


def test_jobs_know_nothing_of_http_and_use_the_engine_only_through_engine_and_its_types():
    assert offenders("jobs", ("flask", "werkzeug", "ollama_server.api", "ollama_server.services",
                              "ollama_server.dashboard", "llama_cpp")) == []
    reached = [f"{path.relative_to(PACKAGE)} imports {name}" for path in modules("jobs")
               for name in sorted(imports_of(path))
               if name.startswith("ollama_server.engine") and name not in ENGINE_FOR_JOBS]
    assert reached == []
