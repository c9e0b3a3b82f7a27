"""Subprocess that runs math-verify for siri_rl.reward (one JSON request per line on stdin, one reply per line).

It lives in its own process so that a pathological answer (a tower of exponents that sympy tries to expand, a
parser stuck in backtracking) can be killed from outside: math-verify's own timeout is a SIGALRM, which only works
on a main thread and cannot interrupt a long C call. Here it is the first, cheap line of defence; the parent's
wall-clock kill is the backstop.
"""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache


def main() -> None:
    # Keep the protocol channel clean: anything a library prints goes to stderr.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr

    import logging

    logging.disable(logging.WARNING)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    def targets(match_types: tuple[str, ...]):
        out = []
        for match_type in match_types:
            if match_type == "latex":
                out.append(LatexExtractionConfig(boxed_match_priority=0))
            elif match_type == "expr":
                out.append(ExprExtractionConfig())
        return out

    @lru_cache(maxsize=4096)
    def parsed(text: str, match_types: tuple[str, ...], alarm: int):
        return parse(text, targets(match_types), parsing_timeout=alarm)

    for line in sys.stdin:
        try:
            req = json.loads(line)
            match_types = tuple(req.get("match_types") or ("latex", "expr"))
            alarm = max(1, int(req.get("alarm", 1)))
            gold = parsed(req["gold"], match_types, alarm)
            pred = parsed(req["pred"], match_types, alarm)
            ok = bool(
                verify(
                    gold,
                    pred,
                    float_rounding=int(req.get("precision", 6)),
                    strict=bool(req.get("strict", True)),
                    allow_set_relation_comp=bool(req.get("allow_set_relation_comp", False)),
                    timeout_seconds=alarm,
                )
            )
            reply = {"correct": ok, "status": "ok"}
        except Exception as err:  # noqa: BLE001 - any failure of the grader is an incorrect answer, reported
            status = "timeout" if type(err).__name__ == "TimeoutException" else "error"
            reply = {"correct": False, "status": status, "error": f"{type(err).__name__}: {err}"[:300]}
        channel.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
