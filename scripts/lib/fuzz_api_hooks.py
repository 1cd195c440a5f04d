"""Schemathesis hooks for scripts/fuzz-api."""

import json
import os

import schemathesis


@schemathesis.hook
def filter_body(ctx, body):
    # `cargo lambda watch` cannot put a body that is not UTF-8 into an event: it
    # answers 500 itself and never calls the function. That is raw bytes that do not
    # decode, and text holding a lone surrogate (sent as bytes no UTF-8 decoder
    # takes). API Gateway sends such a body base64-encoded; the functions' answer to
    # it is tested in shared/tests/routes/register_device.rs.
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError):
        return False
    return True


@schemathesis.hook
def map_body(ctx, body):
    # A registration is checked in the body, not a header, so no security scheme
    # carries it: give a string token the valid one scripts/fuzz-api minted, so that
    # generated registrations reach the 200 and its schema, not only the 401.
    operation = getattr(ctx, "operation", None)
    if (
        getattr(operation, "path", None) == "/register-device"
        and isinstance(body, dict)
        and isinstance(body.get("firebase_token"), str)
        # An empty one breaks the schema on purpose (a negative case): kept.
        and body["firebase_token"] != ""
    ):
        body = {**body, "firebase_token": os.environ["FUZZ_TOKEN"]}
    return body


@schemathesis.hook
def filter_headers(ctx, headers):
    # Likewise a header value outside visible ASCII: `cargo lambda watch` puts
    # headers into the event as text and answers 500 itself to one that is not.
    # (The functions' answer to such headers: shared/tests/resilience/hostile_input.rs.)
    for value in (headers or {}).values():
        if isinstance(value, str) and any(not (" " <= c <= "~") and c != "\t" for c in value):
            return False
    return True
