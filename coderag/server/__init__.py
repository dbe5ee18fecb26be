"""The long-lived faces of coderag, and what clients need to reach a running one.

``coderag serve`` is a local HTTP JSON API with the model kept warm; ``coderag mcp`` serves a
repository to coding assistants over the Model Context Protocol. The modules, each named for
what it holds:

* :mod:`.args`: ``coderag serve``'s options, their checks, the command (binds, then serves);
* :mod:`.service`: the served repositories, their shared model, the bounded pool;
* :mod:`.app`: the Starlette app (a handler per endpoint) and the uvicorn server running it;
* :mod:`.guards`: what every request passes first (Host/Origin, JSON bodies, credentials,
  body size, deadlines for slow clients);
* :mod:`.openapi`: the endpoints said once, and the OpenAPI document made from them;
* :mod:`.runtime`: the private runtime file a server publishes, its identity proof;
* :mod:`.client`: find the server for a repository, check its identity, search or refresh;
* :mod:`.autoserve`: the background server ``coderag search`` starts;
* :mod:`.background`: a file watcher in a thread of its own (serve and mcp);
* :mod:`.mcp`: ``coderag mcp``.

What the rest of coderag uses is here (standard library only: ``coderag search`` and the git
hooks import it).
"""

from .autoserve import AUTOSERVE_LOCK, AUTOSERVE_LOG, autoserve_enabled, start_background
from .client import (
    LocalServer,
    ServerUnavailable,
    find_server,
    remote_refresh,
    remote_search,
    request,
)
from .runtime import pid_alive, publish, read_runtime_info, runtime_file

__all__ = [
    "AUTOSERVE_LOCK",
    "AUTOSERVE_LOG",
    "LocalServer",
    "ServerUnavailable",
    "autoserve_enabled",
    "find_server",
    "pid_alive",
    "publish",
    "read_runtime_info",
    "remote_refresh",
    "remote_search",
    "request",
    "runtime_file",
    "start_background",
]
