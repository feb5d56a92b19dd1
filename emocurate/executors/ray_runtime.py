"""Start and stop Ray for emocurate, with the loopback guard on by default.

Ray probes the cloud-metadata address 169.254.169.254 when it starts (even with usage stats off). A local Ray runtime is
started only with `http_proxy`/`HTTP_PROXY` pointing at a closed loopback port, so those probes never leave the machine;
connecting to an existing cluster (`address`) or `allow_network=True` skips the guard. It does not run any pipeline stage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator, Mapping, MutableMapping, Optional
from urllib.parse import urlsplit

LOOPBACK_PROXY = "http://127.0.0.1:9"
"""Port 9 (discard) is closed here: a request sent through this proxy fails at once, on loopback."""

GUARD_ENV = {
    "http_proxy": LOOPBACK_PROXY,
    "HTTP_PROXY": LOOPBACK_PROXY,
    # Loopback traffic (Ray's own services, a `vllm serve` on localhost) must not go to the closed proxy.
    "no_proxy": "127.0.0.1,localhost,::1",
    "NO_PROXY": "127.0.0.1,localhost,::1",
    # Ray's "no cluster" mode: every service binds and connects on 127.0.0.1. Without it Ray finds the node's address by a
    # UDP connect towards 8.8.8.8 and its processes talk over the machine's external interface.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",  # else Ray writes ~/.ray/auth_token
    "RAY_DEDUP_LOGS": "0",
}


class RayGuardError(RuntimeError):
    """Ray was about to start locally without the loopback proxy guard."""


def is_loopback_proxy(url: Optional[str]) -> bool:
    """True when `url` is an http proxy on a loopback address (127.0.0.0/8, localhost or ::1)."""
    if not url:
        return False
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "http" and (host == "localhost" or host == "::1" or host.startswith("127."))


def check_guard(env: Mapping[str, str]) -> None:
    """Raise RayGuardError unless `http_proxy` and `HTTP_PROXY` in `env` point at a loopback proxy and Ray is kept on
    127.0.0.1 (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`)."""
    bad = [k for k in ("http_proxy", "HTTP_PROXY") if not is_loopback_proxy(env.get(k))]
    if env.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        bad.append("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    if bad:
        raise RayGuardError(
            f"refusing to start a local Ray runtime: http_proxy and HTTP_PROXY must point at a closed loopback port "
            f"(e.g. {LOOPBACK_PROXY}) so Ray's cloud-metadata probes stay on this machine, and "
            f"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps its services on 127.0.0.1; "
            f"got {', '.join(f'{k}={env.get(k)!r}' for k in bad)}. Use emocurate.executors.ray_runtime.ray_session(), "
            f"or pass a cluster address, or opt out explicitly (--ray-allow-network)."
        )


def apply_guard(env: MutableMapping[str, str]) -> dict[str, Optional[str]]:
    """Set the guard variables in `env`; return the previous values so they can be restored."""
    previous = {}
    for key, value in GUARD_ENV.items():
        previous[key] = env.get(key)
        env[key] = value
    check_guard(env)
    return previous


def restore(env: MutableMapping[str, str], previous: Mapping[str, Optional[str]]) -> None:
    for key, value in previous.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value


@contextlib.contextmanager
def ray_session(
    address: Optional[str] = None, num_cpus: Optional[int] = None, num_gpus: Optional[int] = None,
    allow_network: bool = False, env_vars: Optional[Mapping[str, str]] = None,
) -> Iterator[None]:
    """Connect to the cluster at `address`, or start a local Ray runtime (guarded); shut it down on exit.

    A local runtime binds to 127.0.0.1 with no dashboard. With `address` (e.g. "auto" or "ray://head:10001") the cluster
    is the user's own and no guard is applied. `allow_network=True` starts a local runtime without the guard.
    `env_vars` are set in every worker (a local runtime's workers inherit this process's environment anyway).
    """
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"--executor ray needs Ray: pip install 'coemogen-toolkit[ray]' ({err})") from err
    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; emocurate starts and stops its own session")
    previous: dict[str, Optional[str]] = {}
    for key, value in QUIET_ENV.items():
        previous[key] = os.environ.get(key)
        os.environ.setdefault(key, value)
    local_only = address is None and not allow_network
    if local_only:
        previous.update(apply_guard(os.environ))
    from ray._private import ray_constants

    # The same switch as RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for this process, where Ray read that variable at import time.
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = not local_only and cluster_mode
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init installs its own and leaves it after shutdown
    try:
        if address is None:
            ray.init(
                num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                log_to_driver=False, configure_logging=False,
            )
        else:
            runtime_env = {"env_vars": dict(env_vars)} if env_vars else None
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, configure_logging=False)
        yield
    finally:
        if ray.is_initialized():
            ray.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)
        restore(os.environ, previous)
