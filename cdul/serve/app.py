"""The web application (Starlette): every page at PATH has its data as JSON at /api + PATH.

Requests carry store, class and row indices and a few query parameters, all checked here;
a bad one is a 4xx with a one-line message (JSON ``{"error": ..., "status": ...}`` under
/api, an HTML page elsewhere), never a server error. Handlers are plain functions, which
Starlette runs in its thread pool, so a slow thumbnail does not hold up other requests.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import pages
from .catalog import MAX_PAGE, Catalog, RequestError, number
from .pictures import Pictures
from .query import MAX_K, MAX_UPLOAD, Finder
from .views import image_details, overview

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
NEIGHBOURS = 12  # shown on the image page


@dataclass
class Served:
    """One store and what serves it."""

    cat: Catalog
    pictures: Pictures
    finder: Finder


def _plain(value):
    """JSON-ready: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_response(data, status: int = 200) -> Response:
    return Response(json.dumps(_plain(data)), status_code=status, media_type="application/json")


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    value = number(text, name)
    if not lo <= value <= hi:
        raise RequestError(400, f"{name} must be {lo}..{hi}, not {value}")
    return value


async def read_upload(request: Request) -> bytes:
    """The request's body, refused (413) as soon as it passes MAX_UPLOAD bytes."""
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > MAX_UPLOAD:
            raise RequestError(413, f"the query image is over {MAX_UPLOAD >> 20} MB")
        parts.append(part)
    return b"".join(parts)


class Handlers:
    """What each route answers, for the stores ``served`` (index s in the paths)."""

    def __init__(self, served: list[Served]):
        self.served = served

    def store(self, request: Request) -> tuple[int, Served]:
        text = request.path_params["s"]
        if not text.isdigit() or int(text) >= len(self.served):
            raise RequestError(404, f"no store {text[:40]!r}: stores are 0..{len(self.served) - 1}")
        return int(text), self.served[int(text)]

    def stores(self, request: Request) -> dict:
        rows = [
            {"index": i, "store": x.cat.url, "n_images": x.cat.n, "classes": len(x.cat.classes)}
            for i, x in enumerate(self.served)
        ]
        return {"stores": rows}

    def overview(self, request: Request) -> dict:
        return overview(self.store(request)[1].cat, request.query_params.get("source"))

    def klass(self, request: Request) -> dict:
        cat = self.store(request)[1].cat
        c = cat.check_class(request.path_params["c"])
        source = cat.source(request.query_params.get("source"))
        page = int_param(request, "page", 0, 0, 10**9)
        return cat.class_page(c, source, page, int_param(request, "size", 60, 1, MAX_PAGE))

    def image(self, request: Request) -> dict:
        x = self.store(request)[1]
        row = x.cat.check_row(request.path_params["row"])
        data = image_details(x.cat, row)
        has_emb = data["status"] == "ok" and x.cat.store.has("emb/global")
        data["neighbours"] = x.finder.neighbours(row, NEIGHBOURS) if has_emb else None
        return data

    def neighbours(self, request: Request) -> dict:
        x = self.store(request)[1]
        row = x.cat.check_row(request.path_params["row"])
        k = int_param(request, "k", NEIGHBOURS, 1, MAX_K)
        return {"store": x.cat.url, "row": row, "neighbours": x.finder.neighbours(row, k)}

    def search(self, request: Request) -> dict:
        x = self.store(request)[1]
        k = int_param(request, "k", 48, 1, MAX_K)
        text, like = request.query_params.get("q"), request.query_params.get("like")
        data: dict = {"store": x.cat.url, "text": text, "like": None, "results": []}
        if text and like:
            raise RequestError(400, "give q (a text) or like (a row), not both")
        if like:
            data["like"] = row = x.cat.check_row(like)
            data["results"] = x.finder.neighbours(row, k)
        elif text is not None and text != "":
            data["results"] = x.finder.by_text(text, k)
        return data

    async def upload(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            x = self.store(request)[1]
            k = int_param(request, "k", 48, 1, MAX_K)
            body = await read_upload(request)
            results = await run_in_threadpool(x.finder.by_image, body, k)
        except RequestError as exc:
            return json_response({"error": exc.message, "status": exc.status}, exc.status)
        return json_response({"store": x.cat.url, "upload": True, "results": results})

    def thumb(self, request: Request) -> Response:
        x = self.store(request)[1]
        row = x.cat.check_row(request.path_params["row"])
        data = x.pictures.jpeg(row, int_param(request, "size", pages.THUMB, 1, 10**6))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    def home(self, request: Request) -> Response:
        if len(self.served) == 1:
            return RedirectResponse("/s/0/", status_code=302)
        return HTMLResponse(pages.stores_page(self.stores(request)))

    def render_class(self, s: int, d: dict) -> str:
        return pages.class_page(s, d, self.served[s].cat.classes)

    def both(self, path: str, data: Callable[[Request], dict], render: Callable[[int, dict], str]) -> list[Route]:
        """The page at path and its data at /api + path."""

        def api(request: Request) -> Response:
            return json_response(data(request))

        def html(request: Request) -> Response:
            return HTMLResponse(render(self.store(request)[0], data(request)))

        return [Route("/api" + path, api), Route(path, html)]


def _failed(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return json_response({"error": message, "status": status}, status)
    return HTMLResponse(pages.error_page(status, message), status_code=status)


def create_app(served: list[Served]) -> Starlette:
    h = Handlers(served)

    def api(data: Callable[[Request], dict]) -> Callable[[Request], Response]:
        return lambda request: json_response(data(request))

    routes = [
        Route("/", h.home),
        Route("/api/stores", api(h.stores)),
        *h.both("/s/{s}/", h.overview, pages.overview_page),
        Route("/api/s/{s}/overview", api(h.overview)),
        *h.both("/s/{s}/class/{c}", h.klass, h.render_class),
        *h.both("/s/{s}/image/{row}", h.image, pages.image_page),
        Route("/api/s/{s}/image/{row}/neighbours", api(h.neighbours)),
        *h.both("/s/{s}/search", h.search, pages.search_page),
        Route("/api/s/{s}/search", h.upload, methods=["POST"]),
        Route("/api/s/{s}/thumb/{row}", h.thumb),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {
        RequestError: lambda request, exc: _failed(request, exc.status, exc.message),
        HTTPException: lambda request, exc: _failed(request, exc.status_code, str(exc.detail)),
    }
    return Starlette(routes=routes, exception_handlers=handlers)
