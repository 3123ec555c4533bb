"""docker-compose.yml refers only to things that exist in the tree."""
import importlib
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def entrypoint_cases():
    text = (ROOT / "platform" / "entrypoint.sh").read_text()
    return dict(re.findall(r"^  ([a-z-]+)\)\n(.*?);;", text, flags=re.S | re.M))


def test_services_and_images_exist():
    compose = load_compose()
    assert {"postgres", "redis", "web", "worker", "worker-gpu", "flower"} <= set(compose["services"])
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
    gpu = compose["services"]["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert compose["services"]["web"]["env_file"] == "platform/.env"
    assert (ROOT / "platform" / "env.example").is_file()


def test_commands_refer_to_real_modules_and_queues():
    compose = load_compose()
    cases = entrypoint_cases()
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        command = service["command"][0]
        assert command in cases, f"{name}: entrypoint has no '{command}' case"
        script = cases[command]
        for module, attr in re.findall(r"([a-z_.]+):([a-z_]+)", script.replace("0.0.0.0:8000", "")):
            assert hasattr(importlib.import_module(module), attr), f"{name}: {module}:{attr}"
        for app in re.findall(r"celery -A (\S+)", script):
            assert hasattr(importlib.import_module(app), "celery_app"), f"{name}: celery app {app}"
        settings_module = service["environment"]["DJANGO_SETTINGS_MODULE"]
        assert (ROOT / (settings_module.replace(".", "/") + ".py")).is_file()
    assert "-Q gpu" in cases["worker-gpu"] and "--concurrency 1" in cases["worker-gpu"]
    assert "-Q default" in cases["worker"]
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        text = (ROOT / "platform" / dockerfile).read_text()
        for required in re.findall(r"-r (requirements/\S+)", text):
            assert (ROOT / required).is_file(), required
