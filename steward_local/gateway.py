"""A local stand-in for API Gateway HTTP APIs, built from the transformed template.

It reads the routes, integrations and the Lambda authorizer from the API's
OpenAPI body, matches requests the way HTTP APIs do (exact routes before
greedy ones), calls the authorizer with a payload 2.0 REQUEST event, and
invokes the integration through moto's Lambda API with a payload 2.0 event.
Like the real service: the path is decoded before routing (``%2F`` arrives
as ``/``, and a decoded ``?`` cuts it), a missing identity header is 401
without calling the authorizer, and an authorizer 'deny' is 403. A method
that HTTP APIs do not route (TRACE, CONNECT, any other) matches no route: 404.
"""

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from steward_local.intrinsics import ACCOUNT_ID, referenced_function
from steward_local.stack import Stack

_ANY_METHOD = "x-amazon-apigateway-any-method"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass(frozen=True)
class Authorizer:
    function_name: str
    identity_headers: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    method: str  # upper case, or ANY
    path: str
    pattern: re.Pattern[str]
    function_name: str
    authorizer: Authorizer | None

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def priority(self) -> tuple[int, int, int]:
        # Exact paths first, greedy ones last; longer literal text first; a method before ANY.
        literal = len(re.sub(r"\{[^}]+\}", "", self.path))
        return ("+}" in self.path, -literal, self.method == "ANY")


def routes_from_template(stack: Stack) -> list[Route]:
    apis = [
        resource
        for resource in stack.transformed.cloudformation["Resources"].values()
        if resource["Type"] == "AWS::ApiGatewayV2::Api" and "Body" in resource.get("Properties", {})
    ]
    if not apis:
        return []
    if len(apis) > 1:
        raise RuntimeError(f"The local gateway serves one HTTP API; the template has {len(apis)}")
    body = apis[0]["Properties"]["Body"]
    authorizers = _authorizers(stack, body)
    routes = []
    for path, operations in body.get("paths", {}).items():
        for method_key, operation in operations.items():
            if method_key not in (*_METHODS, _ANY_METHOD):
                continue
            integration = operation["x-amazon-apigateway-integration"]
            function = referenced_function(integration["uri"])
            if function is None:
                raise RuntimeError(f"Route {path} has no Lambda integration the runner understands")
            security = [name for item in operation.get("security", []) for name in item]
            authorizer = next((authorizers[name] for name in security if name in authorizers), None)
            routes.append(
                Route(
                    method="ANY" if method_key == _ANY_METHOD else method_key.upper(),
                    path=path,
                    pattern=_path_pattern(path),
                    function_name=stack.resources[function].physical_id,
                    authorizer=authorizer,
                )
            )
    return sorted(routes, key=lambda route: route.priority)


def _authorizers(stack: Stack, body: dict[str, Any]) -> dict[str, Authorizer]:
    found = {}
    for name, scheme in body.get("components", {}).get("securitySchemes", {}).items():
        spec = scheme.get("x-amazon-apigateway-authorizer")
        if not spec:
            continue
        if spec.get("type") != "request" or spec.get("authorizerPayloadFormatVersion") != "2.0":
            raise RuntimeError(f"Authorizer {name}: the runner supports payload 2.0 request authorizers only")
        function = referenced_function(spec["authorizerUri"])
        headers = tuple(
            source.removeprefix("$request.header.").lower()
            for source in spec.get("identitySource", [])
            if source.startswith("$request.header.")
        )
        if function is not None:
            found[name] = Authorizer(stack.resources[function].physical_id, headers)
    return found


def _path_pattern(path: str) -> re.Pattern[str]:
    regex = ""
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("+}"):
            regex += f"(?P<{_group(part[1:-2])}>.+)"
        elif part.startswith("{"):
            regex += f"(?P<{_group(part[1:-1])}>[^/]+)"
        else:
            regex += re.escape(part)
    # A greedy variable takes any character, a decoded newline too; '$' would also match before a final newline.
    return re.compile(f"^{regex}\\Z", re.DOTALL)


def _group(name: str) -> str:
    return re.sub(r"\W", "_", name)


class _GatewayServer(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections as soon as ~16 clients connect at
    # once; API Gateway holds far more. One daemon thread per connection, none kept at exit.
    request_queue_size = 512
    daemon_threads = True


class HttpApiGateway:
    def __init__(self, stack: Stack, host: str, port: int) -> None:
        self.stack = stack
        self.routes = routes_from_template(stack)
        self.lambda_client = stack.client("lambda")
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Errors of the HTTP layer itself (a request line over 64 KB: 414) in API Gateway's JSON form.
            error_content_type = "application/json"
            error_message_format = '{"message": "%(explain)s"}'

            def do_request(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = gateway.handle(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_request  # noqa: N815

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                if code == HTTPStatus.REQUEST_URI_TOO_LONG:
                    # Read the rest of the request first: closing a socket with unread input
                    # resets it, and the client would see a dropped connection instead of 414.
                    _drain_request(self.rfile)
                super().send_error(code, message, explain)

            def __getattr__(self, name: str) -> Any:
                # http.server answers 501 for a method without a do_ handler; the gateway answers it instead.
                if name.startswith("do_"):
                    return self.do_request
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                # A request refused while its line is read (414) has no path yet.
                path = getattr(self, "path", "")
                print(f"api  {self.command} {path} -> {args[1] if len(args) > 1 else ''}", flush=True)

        self._handler = Handler
        self._address = (host, port)
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        self.server = _GatewayServer(self._address, self._handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def handle(
        self, method: str, target: str, raw_headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if method.lower() not in _METHODS:
            return _message(404, "Not Found")
        parts = urlsplit(target)
        # Like HTTP APIs: the path is decoded before routing, and cut at a decoded '?' or '#'.
        try:
            raw_path = re.split(r"[?#]", unquote(parts.path, errors="strict"), maxsplit=1)[0]
        except UnicodeDecodeError:
            return _message(400, "Bad Request")
        route, path_parameters = self._match(method, raw_path)
        if route is None:
            return _message(404, "Not Found")
        headers = {name.lower(): value for name, value in raw_headers.items()}
        event = _http_event(route, method, raw_path, parts.query, headers, body, path_parameters)
        if route.authorizer is not None:
            identity = [headers.get(name) for name in route.authorizer.identity_headers]
            if any(value is None or value == "" for value in identity):
                return _message(401, "Unauthorized")
            answer = self._invoke(
                route.authorizer.function_name, _authorizer_event(event, identity, self.stack.config.region)
            )
            if answer is _FAILED:
                return _message(500, "Internal Server Error")
            if not isinstance(answer, dict) or answer.get("isAuthorized") is not True:
                return _message(403, "Forbidden")
            event["requestContext"]["authorizer"] = {"lambda": answer.get("context") or {}}
        result = self._invoke(route.function_name, event)
        if result is _FAILED:
            return _message(500, "Internal Server Error")
        return _http_response(result)

    def _match(self, method: str, raw_path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            if route.method not in (method, "ANY"):
                continue
            match = route.pattern.match(raw_path)
            if match:
                names = re.findall(r"\{([^}+]+)\+?\}", route.path)
                return route, dict(zip(names, match.groups(), strict=True))
        return None, {}

    def _invoke(self, function_name: str, event: dict[str, Any]) -> Any:
        response = self.lambda_client.invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
        payload = response["Payload"].read()
        if response.get("FunctionError"):
            return _FAILED
        return json.loads(payload) if payload else None


_FAILED = object()
_MAX_DRAINED_BYTES = 16 * 1024 * 1024  # what a refused request may still send (API Gateway takes 10 MB bodies)


def _drain_request(stream: Any) -> None:
    """Consume the rest of a refused request: its request line, headers and body (bounded)."""
    read, length, in_request_line = 0, 0, True
    while read < _MAX_DRAINED_BYTES:
        chunk = stream.readline(65537)
        read += len(chunk)
        if not chunk:
            return
        if not chunk.endswith(b"\n"):
            continue  # the line goes on
        if in_request_line:
            in_request_line = False
        elif chunk in (b"\r\n", b"\n"):
            stream.read(min(length, _MAX_DRAINED_BYTES - read))
            return
        elif chunk.lower().startswith(b"content-length:"):
            value = chunk.split(b":", 1)[1].strip()
            length = int(value) if value.isdigit() else 0


def _message(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps({"message": message}).encode()


def _http_event(
    route: Route,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, str],
    body: bytes,
    path_parameters: dict[str, str],
) -> dict[str, Any]:
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = time.time()
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": {name: value for name, value in headers.items() if name != "cookie"},
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route.route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if "cookie" in headers:
        event["cookies"] = [cookie.strip() for cookie in headers["cookie"].split(";")]
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = text
    return event


def _authorizer_event(http_event: dict[str, Any], identity: list[str | None], region: str) -> dict[str, Any]:
    method = http_event["requestContext"]["http"]["method"]
    route_arn = f"arn:aws:execute-api:{region}:{ACCOUNT_ID}:local/$default/{method}{http_event['rawPath']}"
    event = {key: value for key, value in http_event.items() if key not in ("body", "isBase64Encoded")}
    return {**event, "type": "REQUEST", "routeArn": route_arn, "identitySource": identity}


def _http_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    # Payload 2.0: a dict with statusCode is a full response; anything else is a 200 JSON body.
    if not (isinstance(result, dict) and "statusCode" in result):
        return 200, {"content-type": "application/json"}, json.dumps(result).encode()
    headers = {name.lower(): str(value) for name, value in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = ", ".join(str(value) for value in values)
    if result.get("cookies"):
        headers["set-cookie"] = "; ".join(result["cookies"])
    body = result.get("body") or ""
    payload = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    headers.setdefault("content-type", "application/json")
    return int(result["statusCode"]), headers, payload
