"""Dependencies point one way: core <- survey/annotation <- training, and the ML
library (training/pipeline/) imports nothing from Django. Read from the source
with ``ast``, so an import inside a function counts too."""
import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS_ABOVE_CORE = {"training", "survey", "annotation"}
DJANGO_SIDE = {"django", "rest_framework", "drf_spectacular", "celery", "kombu", "environ", "axes", "csp"}
# The first-party modules the pipeline may read outside itself: plain Python, no Django.
PIPELINE_MAY_IMPORT = {"core.criteria", "core.files"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _python_files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_core_imports_nothing_from_the_apps_above_it():
    bad = [f"{path.relative_to(ROOT)}:{line}: {module}"
           for path in _python_files("core") for line, module in _imports(path)
           if module.split(".")[0] in APPS_ABOVE_CORE]
    assert bad == []


def test_the_pipeline_imports_nothing_from_django_or_the_django_apps():
    bad = []
    for path in _python_files("training/pipeline"):
        for line, module in _imports(path):
            top = module.split(".")[0]
            first_party = top in APPS_ABOVE_CORE | {"core"} and not module.startswith("training.pipeline")
            allowed = any(module == m or module.startswith(m + ".") for m in PIPELINE_MAY_IMPORT)
            if top in DJANGO_SIDE or (first_party and not allowed):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert bad == []


def test_the_criteria_and_file_helpers_import_without_django():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = ("import sys, training.pipeline.criteria, training.pipeline.io, core.criteria; "
            "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework', 'celery')); "
            "assert not leaked, leaked; print(len(core.criteria.ALL_CRITERIA))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 7
