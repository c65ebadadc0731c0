"""The shared JSON-lines log format: fields merged, exceptions by type only, handlers replaced."""

from __future__ import annotations

import io
import json
import logging

from starlock.atls.jsonlog import configure


def test_records_are_json_lines_with_fields_and_no_exception_message() -> None:
    out = io.StringIO()
    logger = configure(logging.INFO, stream=out, logger="starlock.test-jsonlog")
    log = logging.getLogger("starlock.test-jsonlog.child")
    log.info("ticket", extra={"fields": {"node": "n1", "msg": "must not replace the message", "count": 2}})
    try:
        raise ValueError("secret-material-0123")
    except ValueError:
        log.exception("failed")
    log.debug("below the level")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["ticket", "failed"]
    assert lines[0]["node"] == "n1" and lines[0]["count"] == 2 and lines[0]["logger"] == "starlock.test-jsonlog.child"
    assert lines[0]["time"].endswith("Z") and lines[0]["level"] == "INFO"
    assert lines[1]["exception"] == "ValueError" and "secret-material" not in out.getvalue()
    # a second configure replaces the handler instead of doubling every line
    again = io.StringIO()
    configure(logging.WARNING, stream=again, logger="starlock.test-jsonlog")
    log.warning("once")
    assert out.getvalue().count("once") == 0 and again.getvalue().count("once") == 1
    assert logger.propagate is False
