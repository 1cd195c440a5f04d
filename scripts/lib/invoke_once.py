#!/usr/bin/env python3
"""Answers one Lambda invocation of a function binary without AWS.

Serves the Lambda Runtime API on a free local port: hands out EVENT once at
`GET /2018-06-01/runtime/invocation/next`, takes the answer at
`POST .../invocation/<id>/response` (or `.../error`, `.../init/error`), prints it as
JSON on stdout and stops the function. Exit status 0 when an answer arrived, 1 on
an error report, 2 on a timeout.

    invoke_once.py EVENT_FILE TIMEOUT_SECONDS -- COMMAND [ARGS...]
"""

import http.server
import json
import os
import subprocess
import sys
import threading

REQUEST_ID = "00000000-0000-4000-8000-000000000001"


def main() -> int:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        print(__doc__, file=sys.stderr)
        return 64
    event = open(sys.argv[1], "rb").read()
    timeout = float(sys.argv[2])
    command = sys.argv[4:]
    outcome = {}
    done = threading.Event()

    class RuntimeApi(http.server.BaseHTTPRequestHandler):
        handed_out = False

        def do_GET(self):
            if self.path != "/2018-06-01/runtime/invocation/next" or RuntimeApi.handed_out:
                # Only one invocation: a second poll waits until we stop the process.
                done.wait(timeout)
                self.send_error(503)
                return
            RuntimeApi.handed_out = True
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Lambda-Runtime-Aws-Request-Id", REQUEST_ID)
            self.send_header("Lambda-Runtime-Deadline-Ms", "9999999999999")
            self.send_header(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:eu-west-1:000000000000:function:probe",
            )
            self.send_header("Content-Length", str(len(event)))
            self.end_headers()
            self.wfile.write(event)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            outcome["kind"] = self.path.rsplit("/", 1)[-1]
            outcome["body"] = body.decode("utf-8", "replace")
            done.set()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{server.server_address[1]}"
    # What Lambda sets and lambda_runtime requires.
    for key, value in [
        ("AWS_LAMBDA_FUNCTION_NAME", "probe"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/probe"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "probe"),
    ]:
        env.setdefault(key, value)
    child = subprocess.Popen(command, env=env, stdout=sys.stderr)
    # Stop waiting early if the function dies before answering.
    threading.Thread(target=lambda: (child.wait(), done.set()), daemon=True).start()
    arrived = done.wait(timeout) and "kind" in outcome
    child.kill()
    child.wait()
    server.shutdown()
    if not arrived:
        print(f"no answer within {timeout} s", file=sys.stderr)
        return 2
    print(json.dumps({"kind": outcome["kind"], "body": json.loads(outcome["body"] or "null")}))
    return 0 if outcome["kind"] == "response" else 1


if __name__ == "__main__":
    sys.exit(main())
