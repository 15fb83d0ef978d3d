"""Smoke test of the generated Python SDK (`herd_client`) against a live Herd.

Environment: HERD_URL (e.g. http://127.0.0.1:8080), HERD_TOKEN (a bearer token),
optional HERD_SMOKE_NAME (cluster name, default `sdk-smoke-py`), HERD_SMOKE_TIMEOUT
(seconds to wait for the cluster and the delete task, default 300).

Every Herd API call goes through the generated SDK. Prints one line per step; exits
non-zero with a message on the first failed check. A cluster it created is deleted
on the way out, pass or fail.
"""

from __future__ import annotations

import os
import sys
import time
from typing import NoReturn
from uuid import UUID

import httpx
import psycopg

from herd_client import AuthenticatedClient
from herd_client.api.clusters import create_cluster, delete_cluster, get_cluster, get_credentials
from herd_client.api.datastores import list_datastores
from herd_client.api.tasks import get_task
from herd_client.models import (
    ClusterDto,
    ClusterStatus,
    CreateCluster,
    CreatedCluster,
    Credentials,
    ErrorCode,
    PageDatastoreDto,
    Problem,
    TaskDto,
    TaskRef,
    TaskStatus,
)

POLL = 0.5
T0 = time.monotonic()


def fail(msg: str) -> NoReturn:
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def step(msg: str) -> None:
    print(f"[py {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def check(cond: bool, msg: str) -> None:
    if not cond:
        fail(msg)


def env(name: str) -> str:
    v = os.environ.get(name, "").strip()
    if not v:
        fail(f"{name} is not set")
    return v


def main() -> None:
    base_url = env("HERD_URL").rstrip("/")
    token = env("HERD_TOKEN")
    name = os.environ.get("HERD_SMOKE_NAME") or "sdk-smoke-py"
    timeout = float(os.environ.get("HERD_SMOKE_TIMEOUT") or 300)

    client = AuthenticatedClient(base_url=base_url, token=token, timeout=httpx.Timeout(30.0))
    cluster_id: UUID | None = None
    deleted = False
    try:
        with client:
            # a. datastores
            r = list_datastores.sync_detailed(client=client)
            check(r.status_code == 200 and isinstance(r.parsed, PageDatastoreDto), f"list datastores: {r.status_code} {r.content!r}")
            check(not r.parsed.next_cursor, f"datastores: one page expected, got cursor {r.parsed.next_cursor!r}")
            pg = [d for d in r.parsed.items if d.name == "postgresql"]
            check(len(pg) == 1, f"no postgresql datastore in {[d.name for d in r.parsed.items]}")
            versions = [v.version for v in pg[0].versions]
            check("15" in versions, f"postgresql has no version 15: {versions}")
            step(f"datastores: postgresql {', '.join(versions)}")

            # b. create
            r = create_cluster.sync_detailed(
                client=client,
                body=CreateCluster(name=name, datastore="postgresql", version="15", flavor="local.small", nodes=1),
            )
            check(r.status_code == 202, f"create cluster: {r.status_code} {r.content!r}")
            check(isinstance(r.parsed, CreatedCluster), f"create cluster: not a CreatedCluster: {r.parsed!r}")
            created: CreatedCluster = r.parsed
            cluster_id = created.cluster.id
            step(f"created cluster {name} id={cluster_id} task={created.task_id} (202)")

            # c. wait for active
            deadline = time.monotonic() + timeout
            while True:
                r = get_cluster.sync_detailed(id=cluster_id, client=client)
                check(r.status_code == 200 and isinstance(r.parsed, ClusterDto), f"get cluster: {r.status_code} {r.content!r}")
                c: ClusterDto = r.parsed
                if c.status == ClusterStatus.ACTIVE:
                    break
                if c.status == ClusterStatus.FAILED:
                    fail(f"cluster failed: {c.fault.to_dict() if c.fault else 'no fault recorded'}")
                check(time.monotonic() < deadline, f"cluster not active after {timeout:.0f}s (status {c.status})")
                time.sleep(POLL)
            step(f"cluster active ({len(c.nodes)} node)")

            # d. credentials and SQL
            r = get_credentials.sync_detailed(id=cluster_id, client=client)
            check(r.status_code == 200 and isinstance(r.parsed, Credentials), f"credentials: {r.status_code} {r.content!r}")
            uri = r.parsed.uri
            check(isinstance(uri, str) and uri.startswith("postgres"), f"credentials have no uri: {r.parsed.to_dict()}")
            # TLS verified against the cluster's CA, which the same answer carries.
            ca = r.parsed.ca_certificate
            check(ca.startswith("-----BEGIN CERTIFICATE-----"), f"credentials have no CA: {ca!r}")
            check("sslmode=verify-full" in uri, f"the uri does not verify the server: {uri}")
            ca_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"herd-sdk-smoke-{cluster_id}.crt")
            with open(ca_file, "w") as f:
                f.write(ca)
            value = f"hello from {name}"
            with psycopg.connect(uri, connect_timeout=10, sslrootcert=ca_file) as conn:
                conn.execute("CREATE TABLE sdk_smoke (id int PRIMARY KEY, v text NOT NULL)")
                conn.execute("INSERT INTO sdk_smoke VALUES (1, %s)", (value,))
                row = conn.execute("SELECT v FROM sdk_smoke WHERE id = 1").fetchone()
            check(row is not None and row[0] == value, f"read back {row!r}, want {value!r}")
            step(f"sql: created table, inserted and read back {value!r}")

            # e. a typed Problem for an invalid request
            r = create_cluster.sync_detailed(
                client=client,
                body=CreateCluster(name="Bad_Name", datastore="postgresql", version="15", flavor="local.small", nodes=99),
            )
            check(r.status_code == 422, f"invalid create: want 422, got {r.status_code} {r.content!r}")
            check(isinstance(r.parsed, Problem), f"invalid create: not a Problem: {r.parsed!r}")
            p: Problem = r.parsed
            check(p.status == 422, f"problem status {p.status}")
            check(p.code == ErrorCode.VALIDATION_FAILED, f"problem code {p.code}")
            fields = sorted(e.field for e in (p.errors or []))
            check("nodes" in fields and "name" in fields, f"problem errors name {fields}, want nodes and name")
            step(f"invalid create: 422 {p.code} fields={','.join(fields)}")

            # f. delete, wait for the task, then 404
            r = delete_cluster.sync_detailed(id=cluster_id, client=client)
            check(r.status_code == 202 and isinstance(r.parsed, TaskRef), f"delete: {r.status_code} {r.content!r}")
            task_id = r.parsed.task_id
            deleted = True
            deadline = time.monotonic() + timeout
            while True:
                r = get_task.sync_detailed(id=task_id, client=client)
                check(r.status_code == 200 and isinstance(r.parsed, TaskDto), f"get task: {r.status_code} {r.content!r}")
                t: TaskDto = r.parsed
                if t.status == TaskStatus.SUCCEEDED:
                    break
                check(t.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED), f"delete task {t.status}: {t.to_dict()}")
                check(time.monotonic() < deadline, f"delete task not done after {timeout:.0f}s ({t.status})")
                time.sleep(POLL)
            r = get_cluster.sync_detailed(id=cluster_id, client=client)
            check(r.status_code == 404, f"get deleted cluster: want 404, got {r.status_code} {r.content!r}")
            check(isinstance(r.parsed, Problem) and r.parsed.code == ErrorCode.NOT_FOUND, f"404 body: {r.parsed!r}")
            step(f"deleted: task {task_id} succeeded, cluster now 404 {r.parsed.code}")
    finally:
        if cluster_id is not None and not deleted:
            # Best effort: do not leave servers behind when a check failed.
            with AuthenticatedClient(base_url=base_url, token=token) as c2:
                try:
                    delete_cluster.sync_detailed(id=cluster_id, client=c2)
                    print(f"cleanup: asked to delete cluster {cluster_id}", file=sys.stderr)
                except Exception as e:  # noqa: BLE001
                    print(f"cleanup: could not delete cluster {cluster_id}: {e}", file=sys.stderr)
    step("python smoke: OK")


if __name__ == "__main__":
    main()
