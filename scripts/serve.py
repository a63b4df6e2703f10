"""Start the app for a class: ``make run`` (or ``python scripts/serve.py --port 8501``).

It makes the operator's secret, prints the two links (the operator's, which holds it, and the one for
classmates), then runs ``streamlit run streamlit_app.py`` with the secret in its environment. Whoever opens
the operator link is the operator in that browser session; everyone else is a visitor.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lan_address() -> str:
    """This machine's name as classmates may reach it (its host name's address), or localhost."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "localhost"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8501)
    ap.add_argument("streamlit_args", nargs="*", help="more `streamlit run` options, after --")
    args = ap.parse_args(argv)
    token = os.environ.get("CNN_OPERATOR_TOKEN") or secrets.token_urlsafe(18)
    print(f"Operator (you; keep this link to yourself): http://localhost:{args.port}/?operator={token}", flush=True)
    host = lan_address()
    host = "<this computer's address on your network>" if host.startswith("127.") else host
    print(f"Classmates:                                  http://{host}:{args.port}", flush=True)
    env = dict(os.environ, CNN_OPERATOR_TOKEN=token)
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.port", str(args.port),
           *args.streamlit_args]
    os.chdir(ROOT)
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
