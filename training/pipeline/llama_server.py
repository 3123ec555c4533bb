"""llama.cpp's OpenAI-compatible server (``llama_cpp.server``, from ``llama-cpp-python[server]``) on loopback.

For the tests against a real server, the generation bench and offline demos:
``LlamaCppServer`` writes a config file naming each model alias (one GGUF file
may be served under several names, each optionally with a LoRA adapter in GGUF
form: ``lora_path``), starts the server in a child process on 127.0.0.1 at a
free port, waits until ``GET /v1/models`` answers, and stops it on exit. The
server's output goes to ``log_path``.

``make install-server`` installs the pinned llama-cpp-python (a build from
source: about 15 minutes on 2 cores).
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .lifecycle import StartStop, stop_process

__all__ = ["LlamaCppServer", "ServedModel", "llama_cpp_installed"]


def llama_cpp_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("uvicorn") is not None


@dataclass
class ServedModel:
    alias: str
    gguf: str | Path
    lora_path: str | Path | None = None
    n_ctx: int = 2048


@dataclass
class LlamaCppServer(StartStop):
    models: list[ServedModel]
    n_threads: int = 2
    log_path: str | Path | None = None
    startup_timeout_s: float = 120.0
    extra_settings: dict = field(default_factory=dict)  # more per-model settings (llama_cpp.server ModelSettings)
    port: int | None = None
    _process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _log = None
    _config_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaCppServer:
        if not llama_cpp_installed():
            raise RuntimeError("llama-cpp-python[server] is not installed (make install-server)")
        if self.port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        models = []
        for model in self.models:
            entry = {"model": str(model.gguf), "model_alias": model.alias, "n_ctx": model.n_ctx,
                     "n_threads": self.n_threads, "n_threads_batch": self.n_threads, "verbose": False,
                     **self.extra_settings}
            if model.lora_path is not None:
                entry["lora_path"] = str(model.lora_path)
            models.append(entry)
        handle, name = tempfile.mkstemp(prefix="llama-server-", suffix=".json")
        import os

        os.close(handle)
        config = self._config_path = Path(name)
        config.write_text(json.dumps({"host": "127.0.0.1", "port": self.port, "models": models}))
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)],
                                         stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout_s
        import httpx

        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with status {self._process.returncode}"
                                   + (f"; see {self.log_path}" if self.log_path else ""))
            try:
                if httpx.get(self.url + "/models", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {self.startup_timeout_s:.0f} s")

    def stop(self) -> None:
        stop_process(self._process, timeout_s=15)
        self._process = None
        if self._config_path is not None:
            self._config_path.unlink(missing_ok=True)
            self._config_path = None
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None
