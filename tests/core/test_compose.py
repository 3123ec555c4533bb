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
    assert {"postgres", "redis", "web", "worker", "worker-gpu", "recovery", "flower"} <= set(compose["services"])
    # Job recovery runs in its own process, never as a task a busy worker would hold up.
    assert "recover_jobs" in entrypoint_cases()[compose["services"]["recovery"]["command"][0]]
    assert "beat" not in compose["services"]
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


def test_web_is_reached_only_through_the_reverse_proxy():
    compose = load_compose()
    services = compose["services"]
    assert "ports" not in services["web"], "web must not be published: clients would bypass the proxy and its X-Forwarded-For"
    proxy = services["proxy"]
    assert proxy["ports"] == ["8000:8000"]
    config_mount = next(v for v in proxy["volumes"] if v.endswith(":/etc/nginx/conf.d/default.conf:ro"))
    config = (ROOT / config_mount.split(":")[0]).read_text()
    assert "proxy_pass http://attune_web" in config and "server web:8000" in config
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in config
    # Django trusts exactly the one hop the proxy adds.
    assert services["web"]["environment"]["ATTUNE_TRUSTED_PROXY_COUNT"] == "${ATTUNE_TRUSTED_PROXY_COUNT:-1}"


def test_flower_is_loopback_only():
    flower = load_compose()["services"]["flower"]
    assert flower["command"] == ["flower"]
    assert all(str(port).startswith("127.0.0.1:") for port in flower.get("ports", []))


def run_flower_case(tmp_path, env):
    """The entrypoint's flower case, with a stand-in `celery` that prints its arguments."""
    import os
    import subprocess

    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "celery").write_text('#!/bin/sh\necho "celery $*"\n')
    (fake / "celery").chmod(0o755)
    script = "set -e\n" + entrypoint_cases()["flower"]
    return subprocess.run(["sh", "-c", script], env={"PATH": f"{fake}:{os.environ['PATH']}", **env},
                          capture_output=True, text=True)


def test_flower_refuses_to_start_without_credentials(tmp_path):
    missing = run_flower_case(tmp_path, {})
    assert missing.returncode != 0 and "FLOWER_BASIC_AUTH" in missing.stderr and "celery" not in missing.stdout
    empty = run_flower_case(tmp_path, {"FLOWER_BASIC_AUTH": ""})
    assert empty.returncode != 0
    started = run_flower_case(tmp_path, {"FLOWER_BASIC_AUTH": "admin:s3cret-pass"})
    assert started.returncode == 0, started.stderr
    assert "flower" in started.stdout and "--basic-auth=admin:s3cret-pass" in started.stdout


def test_env_example_documents_the_security_settings():
    text = (ROOT / "platform" / "env.example").read_text()
    for name in ("FLOWER_BASIC_AUTH=", "ATTUNE_TRUSTED_PROXY_COUNT", "ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT"):
        assert name in text, name
