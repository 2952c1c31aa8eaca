"""A sidecar agent forked from the zygote starts without loading the API's models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_agent_start_loads_no_api_model(tmp_path: Path) -> None:
    # What a forked agent does before it launches Envoy: everything it loads then that the
    # zygote did not preload is paid by every pod (pydantic and the API's models: ~0.3 s).
    probe = f"""
import json, sys
from datetime import timedelta
from pathlib import Path
from pilotfish.platform.local import zygote
zygote.preload()
from pilotfish.agent.agent import Agent, envoy_environment, own_values, registration_token
from pilotfish.agent.bootstrap import render_bootstrap
from pilotfish.agent.settings import AgentSettings, IdentitySettings
from pilotfish.api.node import NodeInfo
node = NodeInfo(proxy_type="sidecar", ip="10.44.0.7", pod_name="p", namespace="ns",
                labels={{"app": "a"}}, workload_name="a")
token = Path({str(tmp_path / "token")!r})
token.write_text("t")
settings = AgentSettings(node=node, work_dir=Path({str(tmp_path)!r}),
                         identity=IdentitySettings(token_file=token))
agent = Agent(settings)
render_bootstrap(settings, Path({str(tmp_path / "sds.sock")!r}), registration_token(settings))
envoy_environment(settings), own_values(settings)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "pydantic"
                        or m.startswith("pilotfish.api.networking"))))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout.splitlines()[-1]) == []
