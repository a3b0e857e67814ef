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
    return names


def modules(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def test_exactly_one_module_imports_llama_cpp():
    users = [p.relative_to(PACKAGE).as_posix() for p in modules()
             if any(name == "llama_cpp" or name.startswith("llama_cpp.") for name in imports_of(p))]
    assert users == ["engine/llama_backend.py"]


def test_the_engine_knows_nothing_of_http_or_dialects():
    for path in modules("engine"):
        for name in imports_of(path):
            assert not name.startswith(("flask", "werkzeug", "ollama_server.api", "ollama_server.services")), \
                f"{path.name} imports {name}"


def test_dialects_never_import_llama_cpp_or_the_backend():
    for path in modules("api"):
        for name in imports_of(path):
            assert not name.startswith(("llama_cpp", "ollama_server.engine.llama_backend")), f"{path} imports {name}"
