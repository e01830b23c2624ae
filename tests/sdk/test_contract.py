"""The committed contract: ``openapi.json`` is what the app serves, the TypeScript types are
generated from it, and the Python SDK's models read every field the schema requires."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import mongars_sdk
import pytest
from mongars_sdk import _endpoints as endpoints
from mongars_sdk import _models as sdk
from pydantic import BaseModel

from tests.sdk.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
TS_SDK = REPO / "sdks" / "typescript"
REFRESH = "run `make openapi` and commit openapi.json and sdks/typescript/src/schema.ts"


def _script() -> ModuleType:
    return load_script("openapi")


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return dict(json.loads((REPO / "openapi.json").read_text(encoding="utf-8")))


class TestOpenApiFile:
    def test_the_committed_file_is_what_the_app_serves(self, committed: dict[str, Any]) -> None:
        script = _script()
        current = script.openapi_document()
        assert script.render(current) == (REPO / "openapi.json").read_text(encoding="utf-8"), (
            f"openapi.json differs from the app: {REFRESH}"
        )

    def test_the_typescript_types_are_generated_from_it(self, tmp_path: Path) -> None:
        generator = TS_SDK / "node_modules" / ".bin" / "openapi-typescript"
        assert generator.exists(), "the TypeScript SDK's tools are missing: run `make test`"
        fresh = tmp_path / "schema.ts"
        subprocess.run(  # noqa: S603 - our own tool, fixed arguments
            [str(generator), str(REPO / "openapi.json"), "--output", str(fresh)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        committed_types = (TS_SDK / "src" / "schema.ts").read_text(encoding="utf-8")
        assert fresh.read_text(encoding="utf-8") == committed_types, (
            f"sdks/typescript/src/schema.ts is stale: {REFRESH}"
        )


class TestVersions:
    def test_both_sdks_share_one_version_tied_to_the_api(self, committed: dict[str, Any]) -> None:
        python_project = tomllib.loads((REPO / "sdks/python/pyproject.toml").read_text())
        package = json.loads((TS_SDK / "package.json").read_text())
        lock = json.loads((TS_SDK / "package-lock.json").read_text())
        version = mongars_sdk.__version__
        assert python_project["project"]["version"] == version
        assert package["version"] == lock["version"] == version
        # docs/release.md: an SDK's MAJOR.MINOR is the API's it was built against.
        assert committed["info"]["version"] == mongars_sdk.API_VERSION
        assert version.split(".")[:2] == mongars_sdk.API_VERSION.split(".")[:2]


# SDK model -> the schema component it reads.
MODEL_SCHEMAS: dict[type[BaseModel], str] = {
    sdk.TokenResponse: "TokenResponse",
    sdk.User: "UserOut",
    sdk.UserPage: "UserPage",
    sdk.ApiKey: "ApiKeyOut",
    sdk.ApiKeyCreated: "ApiKeyCreated",
    sdk.Ticket: "TicketResponse",
    sdk.ChatResponse: "ChatResponse",
    sdk.SpeechTurn: "SpeechTurnOut",
    sdk.TokenUsage: "TokenUsage",
    sdk.Citation: "Citation",
    sdk.CancelResponse: "CancelResponse",
    sdk.HistoryItem: "HistoryItem",
    sdk.Conversation: "ConversationOut",
    sdk.ConversationSummary: "ConversationSummaryOut",
    sdk.ConversationPage: "ConversationPage",
    sdk.ConversationDetail: "ConversationDetail",
    sdk.ConversationExport: "ConversationExport",
    sdk.Message: "MessageOut",
    sdk.SearchHit: "SearchHitOut",
    sdk.Document: "DocumentOut",
    sdk.IngestResponse: "IngestResponse",
    sdk.IngestJob: "IngestJobOut",
    sdk.DocumentSearchResult: "SearchResult",
    sdk.DocumentSearchResponse: "SearchResponse",
    sdk.RagContext: "RagContextResponse",
    sdk.RagReference: "RagReference",
    sdk.ModelsResponse: "ModelsResponse",
    sdk.Profile: "ProfileOut",
    sdk.ProvisionJob: "ProvisionJobOut",
    sdk.RoleProvision: "RoleProvisionOut",
    sdk.Role: "RoleOut",
    sdk.RoleParameters: "RoleParameters",
    sdk.RoleAvailability: "RoleAvailability",
    sdk.Usage: "UsageOut",
    sdk.Allowance: "AllowanceOut",
    sdk.UserUsage: "UserUsageOut",
    sdk.QuotaOverrides: "QuotaOverrides",
    sdk.Liveness: "Liveness",
    sdk.Readiness: "Readiness",
}


class TestPythonModels:
    @pytest.mark.parametrize(
        ("sdk_model", "schema_name"), MODEL_SCHEMAS.items(), ids=lambda v: getattr(v, "__name__", v)
    )
    def test_each_model_reads_the_schema_it_mirrors(
        self, committed: dict[str, Any], sdk_model: type[BaseModel], schema_name: str
    ) -> None:
        schema = committed["components"]["schemas"][schema_name]
        properties = set(schema["properties"])
        fields = set(sdk_model.model_fields)
        assert fields <= properties, f"{sdk_model.__name__} reads fields the server never sends"
        required_by_sdk = {
            name for name, field in sdk_model.model_fields.items() if field.is_required()
        }
        assert required_by_sdk <= set(schema.get("required", [])), (
            f"{sdk_model.__name__} requires fields the server may omit"
        )
        missing = set(schema.get("required", [])) - fields
        assert not missing, f"{sdk_model.__name__} drops {sorted(missing)}: add them"


# Routes the SDKs leave out on purpose: the OpenAI-compatible API is for the official `openai`
# clients, and /token is the OAuth2 form for tools (the SDKs log in with the JSON route).
NOT_WRAPPED = re.compile(r"^/v1/|^/token$")


def _normalized(path: str) -> str:
    return re.sub(r"\$?\{[^}]*\}", "{}", path)


def _public_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), _normalized(path))
        for path, operations in document["paths"].items()
        if not NOT_WRAPPED.search(path)
        for method in operations
    }


def _placeholder(annotation: str) -> object:
    if "FileInput" in annotation:
        return b"x"
    if "dict" in annotation:
        return {}
    if "list" in annotation:
        return None
    if annotation.startswith("bool"):
        return False
    if annotation.startswith("int"):
        return 0
    return "{}"


def _python_sdk_routes() -> set[tuple[str, str]]:
    routes = set()
    for function in vars(endpoints).values():
        if not (inspect.isfunction(function) and function.__module__ == endpoints.__name__):
            continue
        if not str(inspect.signature(function).return_annotation).startswith("Call"):
            continue
        parameters = inspect.signature(function).parameters.values()
        arguments = {p.name: _placeholder(str(p.annotation)) for p in parameters}
        call = function(**arguments)
        routes.add((call.method, _normalized(call.path)))
    return routes


def _typescript_sdk_routes() -> set[tuple[str, str]]:
    source = (TS_SDK / "src" / "client.ts").read_text(encoding="utf-8")
    calls = re.findall(r'method:\s*"(\w+)",\s*path:\s*[`"]([^`"]+)[`"]', source)
    return {(method, _normalized(path)) for method, path in calls}


class TestRouteCoverage:
    def test_the_python_sdk_wraps_every_native_route(self, committed: dict[str, Any]) -> None:
        missing = _public_routes(committed) - _python_sdk_routes()
        assert not missing, f"routes without a Python SDK method: {sorted(missing)}"

    def test_the_typescript_sdk_wraps_every_native_route(self, committed: dict[str, Any]) -> None:
        missing = _public_routes(committed) - _typescript_sdk_routes()
        assert not missing, f"routes without a TypeScript SDK method: {sorted(missing)}"
