"""HTTP for the look-up service: a JSON API and a plain server-rendered page.

``create_app(settings)`` builds the FastAPI application; ``simrecon serve`` runs it with
uvicorn (one process: the rate limit is counted in it). What may be asked, and what is
answered, is decided in pipelines/lookup/service.py; this module only translates.

* JSON API (``Authorization: Bearer <token>`` from ``POST /api/login``):
  ``POST /api/lookup`` {kind: number|document, value, case_reference, legal_basis},
  ``POST /api/requests`` {number, telco?, case_reference, legal_basis},
  ``GET /api/requests/{id}``, ``POST /api/logout``; ``GET /api/health`` (no data).
* Page: ``/login``, ``/`` (the form), ``POST /lookup``, ``POST /requests``,
  ``GET /requests/{id}``, ``POST /logout``; a session cookie (HttpOnly, SameSite=Strict,
  Secure over HTTPS) and an anti-forgery field in every form. Queries travel in POST
  bodies, never in URLs; a link from the report (``#number=…``) is a URL fragment, which
  browsers never send: the page's own script copies it into the form.

Every response says ``Cache-Control: no-store``; pages carry a Content-Security-Policy
that allows nothing but this service's own stylesheet and script (no CDN, no inline
script).
"""

from __future__ import annotations

import contextlib
import logging
from importlib import resources
from typing import Any

import jinja2
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict

from pipelines.lookup.accounts import Account, form_token
from pipelines.lookup.service import LookupService, Refused
from pipelines.lookup.settings import ANSWER_FIELDS, ServeSettings

log = logging.getLogger("simrecon.lookup")
COOKIE = "simrecon_lookup"
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
FIELD_LABELS = {
    "telco": "Telco", "msisdn": "Number", "status": "Status", "flags": "Flags",
    "province": "Province code", "province_name": "Province (birth registration)",
    "id_type": "Document type", "id_number": "Document number (as registered)",
    "full_name": "Name (as registered)", "date_of_birth": "Date of birth (as registered)",
    "gender": "Gender (as registered)", "citizen_id": "Verified citizen (CCCD)",
    "line_status": "Line status", "activation_date": "Activated",
    "first_run": "First run seen", "last_run": "Last run seen",
}
assert set(FIELD_LABELS) == set(ANSWER_FIELDS)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    account: str
    password: str


class LookupBody(_Body):
    kind: str
    value: str
    case_reference: str | None = None
    legal_basis: str | None = None


class RequestBody(_Body):
    number: str
    telco: str | None = None
    case_reference: str | None = None
    legal_basis: str | None = None


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: resources.files("pipelines").joinpath(f"templates/lookup/{name}")
            .read_text("utf-8")),
        autoescape=True, undefined=jinja2.StrictUndefined)


def _static(name: str) -> bytes:
    return resources.files("pipelines").joinpath(f"templates/lookup/{name}").read_bytes()


def create_app(settings: ServeSettings, service: LookupService | None = None) -> FastAPI:
    service = service or LookupService(settings)
    templates = _templates()
    static = {"lookup.css": ("text/css", _static("lookup.css")),
              "lookup.js": ("text/javascript", _static("lookup.js"))}
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        service.close()

    app = FastAPI(title="simrecon look-up", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.service = service

    @app.middleware("http")
    async def _headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = CSP
        return response

    def client(request: Request) -> str:
        return request.client.host if request.client else ""

    # --- JSON API ----------------------------------------------------------------------

    def bearer(request: Request) -> tuple[Account, str] | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        account = service.session(token) if token else None
        return (account, token) if account else None

    def refused(exc: Refused) -> JSONResponse:
        return JSONResponse({"error": exc.message, "outcome": exc.outcome,
                             "audit_entry": exc.audit_seq}, status_code=exc.status)

    unauthorised = {"error": "log in first (POST /api/login), then send the token as "
                    "'Authorization: Bearer <token>'", "outcome": "UNAUTHENTICATED"}

    @app.get("/api/health")
    def health() -> dict:
        return service.health()

    @app.post("/api/login")
    def api_login(body: LoginBody, request: Request) -> Any:
        try:
            token, expires, account = service.login(body.account, body.password,
                                                    client(request))
        except Refused as exc:
            return refused(exc)
        return {"token": token, "expires_at": expires, "account": account.name,
                "agency": account.agency, "role": account.role}

    @app.post("/api/logout")
    def api_logout(request: Request) -> Any:
        session = bearer(request)
        if session is None:
            return JSONResponse(unauthorised, status_code=401)
        service.logout(session[0], session[1], client(request))
        return {"logged_out": True}

    @app.post("/api/lookup")
    def api_lookup(body: LookupBody, request: Request) -> Any:
        session = bearer(request)
        if session is None:
            return JSONResponse(unauthorised, status_code=401)
        try:
            answer = service.lookup(session[0], body.kind, body.value, body.case_reference,
                                    body.legal_basis, client(request))
        except Refused as exc:
            return refused(exc)
        return answer.to_json()

    @app.post("/api/requests")
    def api_raise(body: RequestBody, request: Request) -> Any:
        session = bearer(request)
        if session is None:
            return JSONResponse(unauthorised, status_code=401)
        try:
            shown, new = service.raise_request(session[0], body.number, body.telco,
                                               body.case_reference, body.legal_basis,
                                               client(request))
        except Refused as exc:
            return refused(exc)
        return JSONResponse({**shown, "new": new}, status_code=201 if new else 200)

    @app.get("/api/requests/{request_id}")
    def api_request(request_id: int, request: Request) -> Any:
        session = bearer(request)
        if session is None:
            return JSONResponse(unauthorised, status_code=401)
        try:
            return service.request_status(session[0], request_id, client(request))
        except Refused as exc:
            return refused(exc)

    # --- the page ------------------------------------------------------------------------

    def page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = templates.get_template(name).render(labels=FIELD_LABELS, **values)
        return HTMLResponse(html, status_code=status)

    def cookie_session(request: Request) -> tuple[Account, str] | None:
        token = request.cookies.get(COOKIE, "")
        account = service.session(token) if token else None
        return (account, token) if account else None

    def form_ok(session: tuple[Account, str], value: str) -> bool:
        return bool(value) and value == form_token(session[1])

    def lookup_page(session: tuple[Account, str], status: int = 200, **values: Any
                    ) -> HTMLResponse:
        defaults = {"answer": None, "error": None, "request": None, "kind": "number",
                    "value": "", "case_reference": "", "legal_basis": ""}
        return page("lookup.html.j2", status, account=session[0], form=form_token(session[1]),
                    telcos=service.telcos, legal_bases=settings.legal_bases,
                    **{**defaults, **values})

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in static:
            return Response(status_code=404)
        kind, data = static[name]
        return Response(data, media_type=kind)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/login")
    def login_form() -> HTMLResponse:
        return page("login.html.j2", error=None)

    @app.post("/login")
    def login_submit(request: Request, account: str = Form(""), password: str = Form("")
                     ) -> Response:
        try:
            token, _, _ = service.login(account, password, client(request))
        except Refused as exc:
            return page("login.html.j2", exc.status, error=exc.message)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, max_age=settings.session_minutes * 60, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.post("/logout")
    def logout_submit(request: Request, form: str = Form("")) -> Response:
        session = cookie_session(request)
        if session is not None and form_ok(session, form):
            service.logout(session[0], session[1], client(request))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/")
    def home(request: Request) -> Response:
        session = cookie_session(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        return lookup_page(session)

    @app.post("/lookup")
    def lookup_submit(request: Request, kind: str = Form("number"), value: str = Form(""),
                      case_reference: str = Form(""), legal_basis: str = Form(""),
                      form: str = Form("")) -> Response:
        session = cookie_session(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        kept = {"kind": kind, "value": value, "case_reference": case_reference,
                "legal_basis": legal_basis}
        if not form_ok(session, form):
            return lookup_page(session, 403, error="the form expired: submit it again", **kept)
        try:
            answer = service.lookup(session[0], kind, value, case_reference, legal_basis,
                                    client(request))
        except Refused as exc:
            return lookup_page(session, exc.status, error=exc.message, **kept)
        return lookup_page(session, answer=answer, **kept)

    @app.post("/requests")
    def request_submit(request: Request, number: str = Form(""), telco: str = Form(""),
                       case_reference: str = Form(""), legal_basis: str = Form(""),
                       form: str = Form("")) -> Response:
        session = cookie_session(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        kept = {"kind": "number", "value": number, "case_reference": case_reference,
                "legal_basis": legal_basis}
        if not form_ok(session, form):
            return lookup_page(session, 403, error="the form expired: submit it again", **kept)
        try:
            shown, _ = service.raise_request(session[0], number, telco, case_reference,
                                             legal_basis, client(request))
        except Refused as exc:
            return lookup_page(session, exc.status, error=exc.message, **kept)
        return lookup_page(session, request=shown, **kept)

    @app.get("/requests/{request_id}")
    def request_page(request_id: int, request: Request) -> Response:
        session = cookie_session(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        try:
            shown = service.request_status(session[0], request_id, client(request))
        except Refused as exc:
            return lookup_page(session, exc.status, error=exc.message)
        return lookup_page(session, request=shown)

    return app


def serve(settings: ServeSettings, host: str | None = None, port: int | None = None) -> None:
    """Run the service with uvicorn until stopped (no access log: the audit log is the
    record, and logs carry no query)."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port,
                access_log=False, log_level="info", workers=1, server_header=False)
