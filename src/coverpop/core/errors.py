"""One exception type for bad input, and a wrapper that turns it into a one-line error."""

import sys
from collections.abc import Callable

from coverpop.core.redact import redact_text


class CoverpopError(Exception):
    """Bad input or a state the user must fix; the message is one line naming the culprit."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a CoverpopError exits 1 with its message alone (no traceback wall)."""
    try:
        main()
    except CoverpopError as err:
        print(f"error: {redact_text(err)}", file=sys.stderr)   # no credential in any output
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the stage again to resume", file=sys.stderr)
        sys.exit(130)
