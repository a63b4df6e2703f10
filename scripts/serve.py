"""Start the app for a class: ``make run`` (or ``python scripts/serve.py --port 8501``).

It makes the operator's secret, prints the two links (the operator's, which holds it, and the one for
classmates), imports what every page needs, then runs ``streamlit run streamlit_app.py`` in this same process
with the secret in its environment. Whoever opens the operator link is the operator in that browser session;
everyone else is a visitor.

Why the imports first: a page's script imports torch, torchvision, pandas, altair and cnn_core on the first
visit after a start, about 4 s on this 2-core machine (the first page took 6.4 s, a second visit 2.3 s). Done
here, before the server answers, the first visitor waits only for the page's own work.
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
    os.environ["CNN_OPERATOR_TOKEN"] = token
    os.chdir(ROOT)
    warm_up()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.port", str(args.port),
                *args.streamlit_args]
    return cli.main()  # `streamlit run`, as its own command does it (it exits when the server stops)


def warm_up() -> None:
    """Import the pages' libraries (not the pages: their Streamlit caches need the running server)."""
    sys.path.insert(0, str(ROOT))
    import altair  # noqa: F401
    import pandas  # noqa: F401
    import torchvision  # noqa: F401  (the dataset checks and pretrained models)

    import cnn_core.data  # noqa: F401
    import cnn_core.evaluation.modelcard  # noqa: F401
    import cnn_core.evaluation.predictor  # noqa: F401
    import cnn_core.evaluation.reports  # noqa: F401
    import cnn_core.jobs.manager  # noqa: F401
    import cnn_core.models  # noqa: F401
    import cnn_core.training.estimate  # noqa: F401
    import cnn_core.workflows.sweep  # noqa: F401
    from cnn_core.cli.listing import model_rows

    model_rows()  # kept in the cache folder: `python -m cnn_core models` answers at once from now on


if __name__ == "__main__":
    sys.exit(main())
