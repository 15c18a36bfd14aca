"""exec, attach and port-forward with the official Python client (kubernetes.stream, over
WebSocket) against a Timonier node. argv: kubeconfig, the name of a Running pod of the
kubernetes-bootcamp image (a shell, and an HTTP server on 8080 that logs each request)."""
import socket
import sys
import time

from kubernetes import client, config
from kubernetes.stream import portforward, stream, ws_client

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
POD = sys.argv[2]
NS = "default"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def exec_(command, **kw):
    args = dict(stderr=True, stdin=False, stdout=True, tty=False)
    args.update(kw)
    return stream(core.connect_get_namespaced_pod_exec, POD, NS, command=command, **args)


# exec, output collected (the client's default): what the command printed.
out = exec_(["echo", "hello"])
check(out == "hello\n", "exec output: %r" % out)

# stdout and stderr apart, and the exit status from the error channel's Status.
resp = exec_(["sh", "-c", "echo out; echo err >&2; exit 3"], _preload_content=False)
resp.run_forever(timeout=30)
check(not resp.is_open(), "exec session still open")
stdout, stderr = resp.read_stdout(), resp.read_stderr()
check((stdout, stderr) == ("out\n", "err\n"), "stdout %r stderr %r" % (stdout, stderr))
check(resp.returncode == 3, "exit status %r" % resp.returncode)
resp = exec_(["true"], _preload_content=False)
resp.run_forever(timeout=30)
check(resp.returncode == 0, "exit status of true: %r" % resp.returncode)

# stdin: text frames (str) and binary frames (bytes), then the v5 close signal ends cat's input.
resp = exec_(["cat"], stdin=True, _preload_content=False)
check(resp.subprotocol == "v5.channel.k8s.io", "negotiated %r" % resp.subprotocol)
resp.write_stdin("line one\n")
line = resp.readline_stdout(timeout=20)
check(line == "line one", "cat echoed %r" % line)
resp.write_stdin(b"line two\n")
line = resp.readline_stdout(timeout=20)
check(line == "line two", "cat echoed %r" % line)
resp.close_channel(0)
resp.run_forever(timeout=30)
check(not resp.is_open(), "cat did not end on stdin's close")
check(resp.returncode == 0, "cat exit status %r" % resp.returncode)

# The same client offering v4.channel.k8s.io only (no close signal: the command ends itself).
cfg = client.Configuration.get_default_copy()
url = ws_client.get_websocket_url(
    cfg.host + "/api/v1/namespaces/%s/pods/%s/exec?command=sh&command=-c&command=read+l%%3B+echo+got+%%24l%%3B+exit+2"
    "&stdin=true&stdout=true&stderr=true" % (NS, POD)
)
headers = {"sec-websocket-protocol": "v4.channel.k8s.io"}
if cfg.api_key.get("authorization"):
    headers["authorization"] = cfg.api_key["authorization"]
resp = ws_client.WSClient(cfg, url, headers, capture_all=True)
check(resp.subprotocol == "v4.channel.k8s.io", "negotiated %r" % resp.subprotocol)
resp.write_stdin("four\n")
resp.run_forever(timeout=30)
check(resp.read_stdout() == "got four\n", "v4 exec output")
check(resp.returncode == 2, "v4 exit status %r" % resp.returncode)

# port-forward to the app, one connection per port and WebSocket; a request over it.
def http_over(sock):
    sock.sendall(b"GET / HTTP/1.0\r\nHost: bootcamp\r\n\r\n")
    data = b""
    sock.settimeout(30)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data.decode()
        data += chunk


# attach first, so it sees the app's log line for the request made below.
att = stream(core.connect_get_namespaced_pod_attach, POD, NS, stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
time.sleep(1)

pf = portforward(core.connect_get_namespaced_pod_portforward, POD, NS, ports="8080")
body = http_over(pf.socket(8080))
check("200 OK" in body and "Hello Kubernetes bootcamp! | Running on: %s | v=1" % POD in body, "port-forward got %r" % body)
check(pf.error(8080) is None, "port-forward error %r" % pf.error(8080))

line = att.readline_stdout(timeout=20)
check(line is not None and "Running On: %s | Total Requests:" % POD in line, "attach printed %r" % line)
check(att.is_open(), "attach ended with the request")
att.close()

# Two ports on one WebSocket: one works, the other (nothing listens) reports on its error channel.
pf = portforward(core.connect_get_namespaced_pod_portforward, POD, NS, ports="8080,9999")
body = http_over(pf.socket(8080))
check("Hello Kubernetes bootcamp!" in body, "port-forward (two ports) got %r" % body)
deadline = time.time() + 20
while pf.error(9999) is None and time.time() < deadline:
    time.sleep(0.1)
check(pf.error(9999) is not None and "error forwarding port 9999" in pf.error(9999), "port 9999: %r" % pf.error(9999))
pf.close()

print("python streaming: ok")
