"""Connect to ``URL`` the way the stock agent does, and print one JSON line.

orchestrator-agent ``src/tools/ssl.py`` + ``src/index.py``: ``ssl.create_default_context``
(so OpenSSL's default store, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` of the environment),
TLS 1.2 minimum, ``~/.mtls/client.crt`` / ``client.key`` of ``HOME``, hostname checking,
``CERT_REQUIRED``; python-socketio ``AsyncClient`` over an aiohttp session with that context,
websocket transport. The environment and HOME the test gives this process decide everything.

Prints ``{"connected": true, "sid": ...}`` (exit 0) or ``{"connected": false, "error": ...}``
(exit 1). Used by the agent check's tests to prove that the check agrees with the agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys


def agent_context():
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    mtls = os.path.expanduser("~/.mtls")
    context.load_cert_chain(os.path.join(mtls, "client.crt"), os.path.join(mtls, "client.key"))
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def connect(url):
    import aiohttp
    import socketio

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=agent_context())) as session:
        client = socketio.AsyncClient(http_session=session, reconnection=False, handle_sigint=False)
        try:
            await asyncio.wait_for(client.connect(url, transports=["websocket"], wait_timeout=5), 10)
            return {"connected": True, "sid": client.sid}
        except Exception as exc:  # noqa: BLE001 - the class and text are the report
            cause = exc.__cause__ or exc.__context__
            return {"connected": False, "error": "%s: %s (%r)" % (type(exc).__name__, exc, cause)}
        finally:
            await client.disconnect()


if __name__ == "__main__":
    outcome = asyncio.run(connect(sys.argv[1]))
    print(json.dumps(outcome))
    sys.exit(0 if outcome["connected"] else 1)
