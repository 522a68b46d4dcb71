"""The viewer's administration: a city set up from an OpenStreetMap extract, as a page.

``POST /admin/city`` takes an extract (``multipart/form-data``: the file and the options of
``twin city init``), streams it to a temporary file — never whole in memory, up to
``TWIN_MAX_UPLOAD_BYTES``, past the general body limit (``TWIN_MAX_BODY_BYTES``; see
:data:`api.limits.OWN_BODY_LIMITS`) — checks that it is one (its name, then its first bytes),
and runs :func:`twin.founding.init_city` in a worker thread: the answer is ``202 Accepted``
with the job and its ``Location``. ``GET /admin/city/jobs/{job_id}`` says how it goes: its
state (``running``, ``done``, ``failed``), the stage the progress callback last reported,
and when done the plan (:meth:`twin.founding.CityPlan.to_dict`), when failed the reason.
One set-up runs at a time (409 while one does); the jobs live in this process.

Both need the ``admin`` permission on every layer (the role ``administrator``): an anonymous
caller gets 401, another role 403. Each job is recorded in the audit trail (action ``admin``,
no layer) when it ends, with its outcome.

``GET /admin/city`` is the page (``api/static/admin.html`` and ``admin.js``, served here: no
CDN): Chinese first with English beside, as the viewer; it signs in as the viewer does and
shares its session (``sessionStorage``).
"""

from __future__ import annotations

import bz2
import logging
import math
import secrets
import shutil
import tempfile
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from api.errors import PROBLEM_SCHEMA, NotFoundError, ProblemError, problem_responses
from api.security import current_grant
from api.viewer import built_file
from layers.access import Grant
from layers.audit import AuditEvent, record_now
from layers.database import get_engine
from layers.errors import AccessError, ParameterError
from layers.ingest import IngestError
from layers.osm import OSM_FORMATS, osm_format
from layers.settings import TwinSettings
from twin.founding import CityError, check_grid, check_metric_crs, checked_bbox, init_city

__all__ = ["UPLOAD_PATH", "CityJob", "CityOptions", "routes"]

log = logging.getLogger("twin.api")

STATIC = Path(__file__).with_name("static")
#: Where an extract is posted (and the page served); :data:`api.limits.OWN_BODY_LIMITS` lets
#: its body past the general limit, and this module bounds it.
UPLOAD_PATH = "/admin/city"
#: Largest value of an option field, bytes.
MAX_FIELD_BYTES = 4096
#: Bytes of the file (decompressed, for .gz and .bz2) read to tell whether it is OSM data.
SNIFF_BYTES = 64 * 1024
#: Bytes gathered before they are written to the temporary file (off the event loop).
FLUSH_BYTES = 1 << 20
#: Finished jobs kept for ``GET /admin/city/jobs/{job_id}`` (the oldest is forgotten first).
KEPT_JOBS = 20
#: The form's option fields (``file`` is the extract), as ``twin city init``'s options.
OPTIONS = (
    "name",
    "bbox",
    "boundary",
    "metric_crs",
    "district_grid_m",
    "estimate_population",
    "replace",
    "dry_run",
)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_ENDINGS = ", ".join(sorted(OSM_FORMATS, key=len))
_JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "state", "file", "dry_run", "started"],
    "properties": {
        "id": {"type": "string"},
        "state": {"type": "string", "enum": ["running", "done", "failed"]},
        "file": {"type": "string", "description": "The uploaded file's name"},
        "bytes": {"type": "integer"},
        "dry_run": {"type": "boolean"},
        "started": {"type": "string", "format": "date-time"},
        "finished": {"type": ["string", "null"], "format": "date-time"},
        "progress": {
            "type": ["object", "null"],
            "description": "The stage last reported, with done and total (0: not known)",
        },
        "plan": {"type": ["object", "null"], "description": "CityPlan.to_dict(), when done"},
        "error": {"type": ["string", "null"], "description": "Why it failed"},
        "parameter": {"type": ["string", "null"], "description": "The option at fault"},
    },
}


@dataclass(frozen=True)
class CityOptions:
    """The options of a set-up, as :func:`twin.founding.init_city` takes them.

    Attributes
    ----------
    name, bbox, boundary, metric_crs, district_grid_m, estimate_population, replace, dry_run
        As :func:`twin.founding.init_city`; ``bbox`` in EPSG:4326 degrees, the grid in metres.
    """

    name: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    boundary: str | None = None
    metric_crs: str | None = None
    district_grid_m: float | None = None
    estimate_population: bool = True
    replace: bool = False
    dry_run: bool = False

    @classmethod
    def from_form(cls, fields: dict[str, str]) -> CityOptions:
        """Read the options from the form's fields (text), refusing any that is not valid.

        Parameters
        ----------
        fields
            Field name to its text; an empty text is the option left out.

        Returns
        -------
        CityOptions
            The options.

        Raises
        ------
        ProblemError
            400 naming the field: ``bbox`` not four numbers, a flag that is not true or false,
            a box and a boundary both given, or a field this form does not take.
        layers.errors.ParameterError
            400 naming the field, as the set-up refuses them (:mod:`twin.founding`): a box
            not in ordered degrees, not a projected CRS in metres, a grid cell outside
            :data:`twin.founding.GRID_RANGE_M`.
        """
        for name in fields:
            if name not in OPTIONS:
                raise ProblemError(
                    f"{name}: unknown field; this form takes file, {', '.join(OPTIONS)}",
                    parameter=name,
                )
        given = {name: value.strip() for name, value in fields.items() if value.strip()}
        if "bbox" in given and "boundary" in given:
            raise ProblemError(
                "bbox: give the extent as a box or as a boundary, not both", parameter="bbox"
            )
        return cls(
            name=given.get("name"),
            bbox=_bbox(given["bbox"]) if "bbox" in given else None,
            boundary=given.get("boundary"),
            metric_crs=_metric_crs(given["metric_crs"]) if "metric_crs" in given else None,
            district_grid_m=_grid(given["district_grid_m"]) if "district_grid_m" in given else None,
            estimate_population=_flag(given, "estimate_population", default=True),
            replace=_flag(given, "replace", default=False),
            dry_run=_flag(given, "dry_run", default=False),
        )


@dataclass
class CityJob:
    """One set-up of a city from an uploaded extract, run in a worker thread.

    Attributes
    ----------
    id
        The job's id (random, URL-safe).
    file
        The uploaded file's name.
    size
        Its size, bytes.
    options
        The set-up's options.
    state
        ``running``, ``done`` or ``failed``.
    progress
        The stage last reported (``{"stage", "done", "total"}``; total 0: not known), or None.
    plan
        The plan (:meth:`twin.founding.CityPlan.to_dict`, its ``source`` the file's name)
        once done.
    error, parameter
        Why it failed, and the option at fault if one was.
    started, finished
        When (UTC).
    """

    id: str
    file: str
    size: int
    options: CityOptions
    state: str = "running"
    progress: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    error: str | None = None
    parameter: str | None = None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def report(self, stage: str, done: int, total: int) -> None:
        """Take a progress report of :func:`twin.founding.init_city` (its ``progress``).

        Parameters
        ----------
        stage
            The stage (``read``, a layer, ``write``...).
        done, total
            How far it is; ``total`` 0 while not known.
        """
        with self._lock:
            self.progress = {"stage": stage, "done": int(done), "total": int(total)}

    def end(
        self,
        *,
        plan: dict[str, Any] | None = None,
        error: str | None = None,
        parameter: str | None = None,
    ) -> None:
        """Mark the job done (with its plan) or failed (with the reason).

        Parameters
        ----------
        plan
            The plan, when it succeeded.
        error, parameter
            Why it failed, and the option at fault.
        """
        with self._lock:
            self.plan, self.error, self.parameter = plan, error, parameter
            self.state = "done" if error is None else "failed"
            self.finished = datetime.now(UTC)

    def to_dict(self) -> dict[str, Any]:
        """Return the job as JSON-ready data (see ``GET /admin/city/jobs/{job_id}``).

        Returns
        -------
        dict
            ``id``, ``state``, ``file``, ``bytes``, ``dry_run``, ``started``, ``finished``,
            ``progress``, ``plan``, ``error``, ``parameter``.
        """
        with self._lock:
            return {
                "id": self.id,
                "state": self.state,
                "file": self.file,
                "bytes": self.size,
                "dry_run": self.options.dry_run,
                "started": self.started.isoformat(),
                "finished": None if self.finished is None else self.finished.isoformat(),
                "progress": None if self.progress is None else dict(self.progress),
                "plan": self.plan,
                "error": self.error,
                "parameter": self.parameter,
            }


class _Jobs:
    """The process's set-ups: one at a time (from its upload on), the last few kept."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: OrderedDict[str, CityJob] = OrderedDict()
        self.busy: str | None = None  # what holds the slot: "upload" or a running job's id

    def reserve(self) -> None:
        with self.lock:
            if self.busy is not None:
                what = "an upload" if self.busy == "upload" else f"job {self.busy}"
                raise ProblemError(
                    f"a city set-up is under way ({what}); wait until it ends", status=409
                )
            self.busy = "upload"

    def start(self, job: CityJob) -> None:
        with self.lock:
            self.busy = job.id
            self.jobs[job.id] = job
            while len(self.jobs) > KEPT_JOBS:
                oldest = next(iter(self.jobs))
                if oldest == job.id:
                    break
                del self.jobs[oldest]

    def release(self) -> None:
        with self.lock:
            self.busy = None

    def get(self, job_id: str) -> CityJob | None:
        with self.lock:
            return self.jobs.get(job_id)


def require_admin(request: Request) -> Grant:
    """Refuse unless the caller holds the ``admin`` permission on every layer.

    Parameters
    ----------
    request
        The request (its grant, set by :class:`api.security.Guard`).

    Returns
    -------
    Grant
        The caller's grant.

    Raises
    ------
    AccessError
        401 for an anonymous caller without it, 403 for a signed-in one.
    """
    grant = current_grant(request)
    if grant.may("*", "admin"):
        return grant
    if grant.principal.anonymous:
        raise AccessError("sign in as an administrator to set the city up", status=401)
    raise AccessError(
        f"{grant.principal.name} ({', '.join(grant.roles) or 'no role'}) may not set the city "
        "up: that needs the admin permission on every layer (role administrator)",
        status=403,
    )


def routes(settings: TwinSettings) -> APIRouter:
    """Build the administration's endpoints.

    Parameters
    ----------
    settings
        The API's settings (database, whether to audit).

    Returns
    -------
    fastapi.APIRouter
        ``POST /admin/city``, ``GET /admin/city/jobs/{job_id}``, and the page
        (``GET /admin/city``, ``/admin/admin.js``).
    """
    url = settings.database_url
    limit = settings.max_upload_bytes
    jobs = _Jobs()
    router = APIRouter(tags=["Administration"])

    @router.get(
        UPLOAD_PATH,
        summary="The city set-up page (HTML; 城市初始化)",
        response_class=FileResponse,
        responses={200: {"description": "The page", "content": {"text/html": {}}}},
    )
    def page() -> FileResponse:
        return FileResponse(STATIC / "admin.html", media_type="text/html")

    @router.get("/admin/admin.js", include_in_schema=False)
    def script(request: Request) -> FileResponse:
        return built_file(STATIC / "build" / "admin.js", "the set-up page's script", request)

    @router.post(
        UPLOAD_PATH,
        summary="Set the city up from an OpenStreetMap extract (twin city init), as a job",
        status_code=202,
        responses={
            202: {
                "description": "The set-up runs: the job, at Location",
                "headers": {
                    "Location": {
                        "description": "GET it for the job's state",
                        "schema": {"type": "string"},
                    }
                },
                "content": {"application/json": {"schema": _JOB_SCHEMA}},
            },
            **problem_responses(400, 401, 403),
            409: {
                "description": "A set-up is under way already",
                "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
            },
            413: {
                "description": f"The extract is larger than {limit:,} bytes",
                "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
            },
            415: {
                "description": "Not multipart/form-data",
                "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
            },
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": _FORM_SCHEMA}},
            }
        },
    )
    async def start(request: Request) -> JSONResponse:
        grant = require_admin(request)
        boundary = _boundary(request)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit + 64 * 1024:
            raise _too_large(limit)
        jobs.reserve()
        directory = Path(tempfile.mkdtemp(prefix="twin-city-"))
        try:
            upload = await _receive(request, boundary, directory, limit)
            options = CityOptions.from_form(upload.fields)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            jobs.release()
            raise
        job = CityJob(secrets.token_urlsafe(9), upload.name, upload.size, options)
        client = request.client.host if request.client else None
        audit = _Audit(
            actor=grant.principal.name,
            role=",".join(grant.roles) or None,
            client=client,
            purpose=(request.headers.get("x-purpose") or "")[:500] or None,
        )
        jobs.start(job)
        worker = threading.Thread(
            target=_run,
            args=(job, upload.path, url, settings.audit, audit, jobs),
            name=f"city-init-{job.id}",
            daemon=True,
        )
        worker.start()
        location = request.url_for("city_job", job_id=job.id).path
        return JSONResponse(job.to_dict(), status_code=202, headers={"Location": location})

    @router.get(
        "/admin/city/jobs/{job_id}",
        name="city_job",
        summary="A city set-up's state, progress, and its plan or error",
        responses={
            200: {"content": {"application/json": {"schema": _JOB_SCHEMA}}},
            **problem_responses(401, 403, 404),
        },
    )
    def job_state(request: Request, job_id: str) -> JSONResponse:
        require_admin(request)
        job = jobs.get(job_id)
        if job is None:
            raise NotFoundError(
                f"no city set-up {job_id!r} in this process (only the last {KEPT_JOBS} are kept)",
                parameter="job_id",
            )
        return JSONResponse(job.to_dict(), headers={"Cache-Control": "no-store"})

    return router


_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": f"The OpenStreetMap extract ({_ENDINGS})",
        },
        "name": {"type": "string", "description": "The city's name"},
        "bbox": {
            "type": "string",
            "description": "Extent: min lon,min lat,max lon,max lat (EPSG:4326)",
        },
        "boundary": {
            "type": "string",
            "description": "Extent: a boundary of the extract (name or relation/ID)",
        },
        "metric_crs": {"type": "string", "description": "Projected CRS in metres (EPSG:...)"},
        "district_grid_m": {
            "type": "number",
            "description": "With no districts in the data: square cells of this side, m (网格)",
        },
        "estimate_population": {"type": "boolean", "default": True},
        "replace": {"type": "boolean", "default": False},
        "dry_run": {"type": "boolean", "default": False},
    },
}


@dataclass
class _Upload:
    """An uploaded extract written to disk, and the form's option fields."""

    path: Path
    name: str
    size: int
    fields: dict[str, str]


@dataclass(frozen=True)
class _Audit:
    """Who started a set-up, from where and why: what its audit event says beside the outcome."""

    actor: str
    role: str | None
    client: str | None
    purpose: str | None


def _boundary(request: Request) -> bytes:
    """Return the multipart boundary of the request's body; 415 when it is not a form."""
    kind, parameters = parse_options_header(request.headers.get("content-type"))
    boundary = parameters.get("boundary", "")
    if kind != "multipart/form-data" or not boundary:
        raise ProblemError(
            "the body must be multipart/form-data: the extract as field 'file', and the options",
            parameter="body",
            status=415,
        )
    try:
        return boundary.encode("latin-1")
    except UnicodeEncodeError:
        raise ProblemError("the multipart boundary is not ASCII", parameter="body") from None


def _too_large(limit: int) -> ProblemError:
    return ProblemError(
        f"file: the extract is larger than {limit:,} bytes", parameter="file", status=413
    )


async def _receive(request: Request, boundary: bytes, directory: Path, limit: int) -> _Upload:
    """Stream the form: the file to ``directory`` (checked as it comes), the fields to text.

    Raises
    ------
    ProblemError
        400 naming the field (unknown, given twice, too long, not UTF-8, a file that is not
        an OSM extract, no file), 413 past ``limit`` bytes.
    """
    decoder = MultipartDecoder(boundary)
    fields: dict[str, str] = {}
    texts: dict[str, bytearray] = {}
    upload: _FileUpload | None = None
    current: str | None = None  # the field whose data is arriving ("file": the extract)

    def finish_part() -> None:
        nonlocal current
        if current is not None and current != "file":
            try:
                fields[current] = texts.pop(current).decode("utf-8")
            except UnicodeDecodeError:
                raise ProblemError(f"{current}: not UTF-8 text", parameter=current) from None
            if "\x00" in fields[current]:
                raise ProblemError(
                    f"{current}: text must not contain a NUL character", parameter=current
                )
        current = None

    async def drain() -> bool:
        nonlocal current, upload
        while True:
            try:
                event = decoder.next_event()
            except ValueError as exc:
                raise ProblemError(f"the form cannot be read: {exc}", parameter="body") from None
            if isinstance(event, NeedData):
                return False
            if isinstance(event, Epilogue):
                finish_part()
                if upload is not None:
                    await upload.close()
                return True
            if isinstance(event, Field | File):
                finish_part()
                if upload is not None and not upload.closed:
                    await upload.close()
                name = event.name
                if name in fields or name in texts or (name == "file" and upload is not None):
                    raise ProblemError(f"{name}: given more than once", parameter=name)
                if isinstance(event, File) and name == "file":
                    upload = _FileUpload(directory, event.filename, limit)
                    current = "file"
                elif name == "file":
                    raise ProblemError(
                        "file: expected the extract as a file (a part with a filename)",
                        parameter="file",
                    )
                elif name not in OPTIONS:
                    raise ProblemError(
                        f"{name}: unknown field; this form takes file, {', '.join(OPTIONS)}",
                        parameter=name,
                    )
                elif isinstance(event, File):
                    raise ProblemError(f"{name}: expected text, not a file", parameter=name)
                else:
                    texts[name] = bytearray()
                    current = name
            elif isinstance(event, Data) and current == "file":
                assert upload is not None
                await upload.write(event.data)
                if not event.more_data:
                    await upload.close()
                    current = None
            elif isinstance(event, Data) and current is not None:
                texts[current] += event.data
                if len(texts[current]) > MAX_FIELD_BYTES:
                    raise ProblemError(
                        f"{current}: longer than {MAX_FIELD_BYTES} bytes", parameter=current
                    )
                if not event.more_data:
                    finish_part()

    try:
        complete = False
        try:
            async for chunk in request.stream():
                if chunk:
                    decoder.receive_data(chunk)
                    complete = await drain() or complete
        except ClientDisconnect:
            raise ProblemError("the upload was cut off by the client", parameter="file") from None
        decoder.receive_data(None)
        complete = await drain() or complete
        if not complete:
            raise ProblemError("the form ends before its closing boundary", parameter="body")
        if upload is None:
            raise ProblemError("file: required (the OpenStreetMap extract)", parameter="file")
        if upload.size == 0:
            raise ProblemError(f"file: {upload.name} is empty", parameter="file")
        return _Upload(upload.path, upload.name, upload.size, fields)
    finally:
        if upload is not None and not upload.closed:
            await upload.close()


class _FileUpload:
    """The extract arriving: written to a temporary file in chunks, its first bytes checked."""

    def __init__(self, directory: Path, filename: str, limit: int):
        self.limit = limit
        name = Path(filename.replace("\\", "/")).name.strip()
        fmt = osm_format(name) if name else None
        if fmt is None:
            raise ProblemError(
                f"file: {name or 'the file'} is not an OpenStreetMap extract by its name "
                f"(expected {_ENDINGS})",
                parameter="file",
            )
        self.name = name
        self.format = fmt
        # the file's own ending, under a name of ours: init_city reads the format from it, and
        # names the city after the rest
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "extract"
        self.path = directory / safe
        self.handle: IO[bytes] = self.path.open("wb")
        self.size = 0
        self.head = bytearray()
        self.checked = False
        self.pending = bytearray()
        self.closed = False

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise _too_large(self.limit)
        if not self.checked:
            self.head += data[: SNIFF_BYTES - len(self.head)]
            if len(self.head) >= SNIFF_BYTES:
                self.check()
        self.pending += data
        if len(self.pending) >= FLUSH_BYTES:
            chunk, self.pending = bytes(self.pending), bytearray()
            await run_in_threadpool(self.handle.write, chunk)

    def check(self) -> None:
        self.checked = True
        reason = osm_content_problem(bytes(self.head), self.format)
        if reason is not None:
            raise ProblemError(
                f"file: {self.name} is not an OpenStreetMap extract: {reason}", parameter="file"
            )

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if not self.checked and self.size:
                self.check()
            if self.pending:
                await run_in_threadpool(self.handle.write, bytes(self.pending))
        finally:
            self.pending = bytearray()
            await run_in_threadpool(self.handle.close)


def osm_content_problem(head: bytes, fmt: str) -> str | None:
    """Tell why the first bytes of a file are not those of an OpenStreetMap file of a format.

    PBF: a BlobHeader of type ``OSMHeader`` first (4-byte big-endian length, then protobuf
    field 1, the type; OSM PBF format, wiki.openstreetmap.org/wiki/PBF_Format). XML (``osm``,
    also inside gzip, RFC 1952, or bzip2): an ``<osm`` element near the start. o5m: the
    ``0xff 0xe0 0x04 o5m2`` header (wiki.openstreetmap.org/wiki/O5m).

    Parameters
    ----------
    head
        The file's first bytes (up to :data:`SNIFF_BYTES`).
    fmt
        The libosmium format its name says (:func:`layers.osm.osm_format`).

    Returns
    -------
    str or None
        The reason, or None if the bytes fit.
    """
    if fmt == "pbf":
        if len(head) < 15 or head[4] != 0x0A or head[6:15] != b"OSMHeader":
            return "a .pbf extract starts with an OSMHeader block, and this does not"
        return None
    if fmt == "o5m":
        return None if head[:7] in (b"\xff\xe0\x04o5m2", b"\xff\xe0\x04o5c2") else "no o5m header"
    text = head
    try:
        if fmt == "osm.gz":
            text = zlib.decompressobj(wbits=31).decompress(head, SNIFF_BYTES)
        elif fmt == "osm.bz2":
            text = bz2.BZ2Decompressor().decompress(head, max_length=SNIFF_BYTES)
    except (zlib.error, OSError, EOFError, ValueError):
        kind = "gzip" if fmt == "osm.gz" else "bzip2"
        return f"its name says {kind}, and it is not {kind} data"
    start = text.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not start.startswith(b"<") or b"<osm" not in text:
        return "OSM XML has an <osm> element at its start, and this has none"
    return None


def _bbox(value: str) -> tuple[float, float, float, float]:
    """Read ``bbox``: ``min lon,min lat,max lon,max lat`` (checked by the set-up itself)."""
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != 4:
        raise ProblemError(
            f"bbox: expected four numbers, min lon,min lat,max lon,max lat; got {value!r}",
            parameter="bbox",
        )
    return checked_bbox(numbers)


def _metric_crs(value: str) -> str:
    """Read ``metric_crs``: a projected CRS in metres (checked by the set-up itself)."""
    check_metric_crs(value)
    return value


def _grid(value: str) -> float:
    """Read ``district_grid_m``: a cell side in metres within the set-up's range."""
    try:
        side = float(value)
    except ValueError:
        side = math.nan
    check_grid(side)
    return side


def _flag(given: dict[str, str], name: str, *, default: bool) -> bool:
    """Read a flag: true/false (also 1/0, yes/no, on/off); ``default`` when left out."""
    if name not in given:
        return default
    value = given[name].lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ProblemError(f"{name}: expected true or false, not {given[name]!r}", parameter=name)


def _run(job: CityJob, path: Path, url: str, audited: bool, audit: _Audit, jobs: _Jobs) -> None:
    """Run a set-up (in its worker thread, as the store's owner), then record it.

    The job shows its end only once the audit is recorded and the slot is free: a caller who
    sees it ended may start the next one at once.
    """
    options = job.options
    outcome: dict[str, Any]
    status = 200
    try:
        plan = init_city(
            path,
            name=options.name,
            bbox=options.bbox,
            boundary=options.boundary,
            metric_crs=options.metric_crs,
            district_grid_m=options.district_grid_m,
            estimate_population=options.estimate_population,
            replace=options.replace,
            dry_run=options.dry_run,
            source_name=job.file,  # not the temporary file's path
            url=url,
            progress=job.report,
        )
        outcome = {"plan": plan.to_dict()}
    except (CityError, IngestError, ParameterError) as exc:
        status = 400
        # the messages name the file by its temporary path: the caller knows it by its name
        message = str(exc).replace(str(path), job.file)
        outcome = {"error": message, "parameter": getattr(exc, "parameter", None)}
    except Exception:
        status = 500
        log.exception("the city set-up of %s failed", job.file)
        outcome = {"error": "the set-up failed on the server; the server's log says why"}
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)
    try:
        if audited:
            _record(job, outcome.get("plan"), url, audit, status)
    finally:
        jobs.release()
        job.end(**outcome)


def _record(
    job: CityJob, plan: dict[str, Any] | None, url: str, audit: _Audit, status: int
) -> None:
    """Record a finished set-up in the audit trail (action ``admin``, no layer)."""
    options = job.options
    plan = plan or {}
    what = "dry run" if options.dry_run else "load"
    written = sum(int(load.get("features", 0)) for load in plan.get("layers", []))
    event = AuditEvent(
        action="admin",
        actor=audit.actor,
        role=audit.role,
        layer=None,
        bbox=tuple(plan["bbox"]) if plan.get("bbox") else options.bbox,
        feature_count=written if plan else None,
        client=audit.client,
        purpose=audit.purpose,
        request=f"POST {UPLOAD_PATH} city init ({what}) of {job.file}, job {job.id}"[:2000],
        status=status,
    )
    try:
        with get_engine(url).begin() as connection:
            record_now(connection, event)
    except Exception:
        log.exception("the audit of city set-up %s was not recorded", job.id)
