"""`python -m api.healthcheck`: exit 0 when the service on this host's PORT is ready (for
container health checks; it reads PORT as the service does)."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    """GET /readyz on 127.0.0.1:$PORT; 0 when it answers 200, else 1."""
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
