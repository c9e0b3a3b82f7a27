"""Subprocess that runs math-verify for siri_rl.reward (one JSON request per line on stdin, one reply per line).

It lives in its own process so that a pathological answer (a tower of exponents that sympy tries to expand, a
parser stuck in backtracking) can be killed from outside: math-verify's own timeout is a SIGALRM, which only works
on a main thread and cannot interrupt a long C call. Here it is the first, cheap line of defence; the parent's
wall-clock kill is the backstop.

math-verify 0.9 swallows its own alarm: ``parse`` returns ``[]`` (math_verify/parser.py:725-730) and ``verify``
returns False (grader.py:875-880), indistinguishable from "no answer" and "not equal", and its
``TimeoutException`` derives from ``BaseException`` (errors.py:1), so no ``except Exception`` sees it. This worker
asks for the exception instead (``raise_on_error=True``) and reports ``timeout``. Reply: ``{"correct", "status", "cacheable"}``; a timeout or an
empty parse is never cacheable, here or in the parent's memo, since a later, less loaded attempt may succeed.
"""

from __future__ import annotations

import json
import os
import sys
from collections import OrderedDict
from itertools import product

PARSE_CACHE_SIZE = 4096


def main() -> None:
    # Keep the protocol channel clean: anything a library prints goes to stderr.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr

    import logging

    logging.disable(logging.WARNING)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    def targets(match_types: tuple[str, ...]):
        out = []
        for match_type in match_types:
            if match_type == "latex":
                out.append(LatexExtractionConfig(boxed_match_priority=0))
            elif match_type == "expr":
                out.append(ExprExtractionConfig())
        return out

    # Finished parses only: the key has no time budget, since a parse that finished is the same under any budget.
    parses: OrderedDict[tuple[str, tuple[str, ...]], list] = OrderedDict()

    def parsed(text: str, match_types: tuple[str, ...], alarm: int) -> list:
        """math-verify's parse of ``text``; raises TimeoutException when its alarm fires (parser.py:725-727)."""
        key = (text, match_types)
        if key in parses:
            parses.move_to_end(key)
            return parses[key]
        result = parse(text, targets(match_types), parsing_timeout=alarm, raise_on_error=True)
        if result:
            parses[key] = result
            if len(parses) > PARSE_CACHE_SIZE:
                parses.popitem(last=False)
        return result

    def equivalent(gold: list, pred: list, req: dict, alarm: int) -> tuple[bool, bool]:
        """(some parse of ``pred`` equals some parse of ``gold``, some comparison timed out).

        ``verify(gold, pred)`` is ``any`` over the pairs, each under its own alarm and each failure False
        (grader.py:826-889); this is the same loop, one pair per call, so that a timed-out pair is seen.
        """
        timed_out = False
        for g, p in product(gold, pred):
            try:
                if verify(
                    g,
                    p,
                    float_rounding=int(req.get("precision", 6)),
                    strict=bool(req.get("strict", True)),
                    allow_set_relation_comp=bool(req.get("allow_set_relation_comp", False)),
                    timeout_seconds=alarm,
                    raise_on_error=True,
                ):
                    return True, timed_out
            except TimeoutException:
                timed_out = True
            except Exception:  # noqa: BLE001 - as verify without raise_on_error: a failed comparison is False
                pass
        return False, timed_out

    for line in sys.stdin:
        try:
            req = json.loads(line)
            match_types = tuple(req.get("match_types") or ("latex", "expr"))
            alarm = max(1, int(req.get("alarm", 1)))
            gold = parsed(req["gold"], match_types, alarm)
            pred = parsed(req["pred"], match_types, alarm)
            correct, timed_out = equivalent(gold, pred, req, alarm)
            if correct or not timed_out:
                reply = {"correct": correct, "status": "ok", "cacheable": bool(gold and pred)}
            else:
                reply = {"correct": False, "status": "timeout", "cacheable": False}
        except TimeoutException as err:  # a BaseException: not caught below
            reply = {"correct": False, "status": "timeout", "cacheable": False, "error": str(err)[:300]}
        except Exception as err:  # noqa: BLE001 - any failure of the grader is an incorrect answer, reported
            error = f"{type(err).__name__}: {err}"[:300]
            reply = {"correct": False, "status": "error", "cacheable": False, "error": error}
        channel.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
